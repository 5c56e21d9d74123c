import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from generation.worker import Worker


class Command(BaseCommand):
    help = "Run generation jobs from the queue until stopped with SIGTERM or Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no job is due instead of waiting for more.",
        )
        parser.add_argument(
            "--poll-seconds",
            type=float,
            default=settings.WORKER_POLL_SECONDS,
            help="Seconds to wait between looks at an empty queue.",
        )

    def handle(self, *args, burst: bool, poll_seconds: float, **options) -> None:
        worker = Worker(poll_seconds=poll_seconds, burst=burst)
        signal.signal(signal.SIGTERM, worker.request_stop)
        signal.signal(signal.SIGINT, worker.request_stop)
        worker.run()
