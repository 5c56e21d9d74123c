"""Wake idle workers when a job is queued: LISTEN/NOTIFY on PostgreSQL.

The notification is only a hint. Workers still poll, rarely, so a lost
notification or another database delays a job by one poll interval at most.
"""

import logging
import select
import threading
from collections.abc import Callable

import psycopg2
import psycopg2.extensions
from django.db import connection

logger = logging.getLogger(__name__)

CHANNEL = "lightsource_jobs"
# How long the listener blocks before it looks at its stop flag.
WAIT_SECONDS = 1.0
RECONNECT_SECONDS = 5.0


def notify_job_queued(queue: str) -> None:
    """Tell listening workers that a job of `queue` is due; a no-op off PostgreSQL."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, queue])


def can_listen() -> bool:
    # The listener speaks psycopg2; Django would pick psycopg 3 if both were
    # installed, and then workers poll instead.
    return connection.vendor == "postgresql" and connection.Database is psycopg2


class Listener(threading.Thread):
    """Holds one extra connection that LISTENs, and calls `on_notify` per hint."""

    def __init__(self, on_notify: Callable[[str], None]) -> None:
        super().__init__(name="listen", daemon=True)
        self.on_notify = on_notify
        self.stopping = threading.Event()
        self.params = connection.get_connection_params()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._listen()
            except Exception:
                logger.exception("listen connection failed; retrying")
                self.stopping.wait(RECONNECT_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=WAIT_SECONDS * 3)

    def _listen(self) -> None:
        listen = psycopg2.connect(**self.params)
        try:
            listen.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            listen.cursor().execute(f"LISTEN {CHANNEL}")
            # A job queued while the connection was being set up sent its
            # notification to no one, so the worker looks once more now.
            self.on_notify("")
            while not self.stopping.is_set():
                self._wait_for_notifications(listen)
        finally:
            listen.close()

    def _wait_for_notifications(self, listen) -> None:
        readable, _, _ = select.select([listen], [], [], WAIT_SECONDS)
        if not readable:
            return
        listen.poll()
        queues = {note.payload for note in listen.notifies}
        listen.notifies.clear()
        for queue in queues:
            self.on_notify(queue)
