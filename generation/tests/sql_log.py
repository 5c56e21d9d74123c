"""Run a manage.py command that logs each SQL statement Django executes.

Process tests start `python -m generation.tests.sql_log runworker ...` and count
the "sql executed" lines of its log to measure how often a worker queries the
database. Transaction control (BEGIN, COMMIT) and the statements Django runs
while it opens a connection are not logged.
"""

import logging
import os
import sys

logger = logging.getLogger("generation.tests.sql_log")

SQL_LINE = "sql executed"


def log_statement(execute, sql, params, many, context):
    verb = sql.split(None, 1)[0] if sql else ""
    logger.info("%s verb=%s", SQL_LINE, verb)
    return execute(sql, params, many, context)


def add_statement_log(sender, connection, **kwargs) -> None:
    # Django opens a connection object again after it closed a stale one, so
    # the wrapper may already be installed.
    if log_statement not in connection.execute_wrappers:
        connection.execute_wrappers.append(log_statement)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lightsource.settings")
    from django.core.management import execute_from_command_line
    from django.db.backends.signals import connection_created

    connection_created.connect(add_statement_log)
    execute_from_command_line(["manage.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
