import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from generation.worker import QUEUES, Worker


class Command(BaseCommand):
    help = "Run generation jobs from the queue until stopped with SIGTERM or Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no job is due and none of this worker's is running.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.WORKER_CONCURRENCY,
            help="Jobs in flight at once per queue (threads waiting on vendors).",
        )
        parser.add_argument(
            "--queues",
            default=",".join(QUEUES),
            help="Comma-separated queues to take jobs from: image, video.",
        )
        parser.add_argument(
            "--poll-seconds",
            type=float,
            default=settings.WORKER_POLL_SECONDS,
            help="Seconds between looks at an empty queue without LISTEN/NOTIFY.",
        )
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=settings.WORKER_GRACE_SECONDS,
            help="On SIGTERM, seconds running jobs get to finish before they "
            "are handed back to the queue.",
        )

    def handle(self, *args, **options) -> None:
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()]
        if not queues or set(queues) - set(QUEUES):
            raise CommandError(f"--queues takes {', '.join(QUEUES)}; got {queues}.")
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.")

        self._name_connections()
        worker = Worker(
            poll_seconds=options["poll_seconds"],
            burst=options["burst"],
            concurrency=options["concurrency"],
            queues=queues,
            grace_seconds=options["grace_seconds"],
        )
        signal.signal(signal.SIGTERM, worker.request_stop)
        signal.signal(signal.SIGINT, worker.request_stop)
        worker.run()

    def _name_connections(self) -> None:
        # Lets operators (and the benchmark) find this process's connections in
        # pg_stat_activity.
        if connection.vendor == "postgresql":
            options = connection.settings_dict.setdefault("OPTIONS", {})
            options["application_name"] = f"lightsource-runworker:{os.getpid()}"
