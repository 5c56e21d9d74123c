import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.services import register_user
from billing.models import LedgerEntry
from billing.services import topup, wallet_for

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "lightsource-demo"
DEMO_CREDIT = 10000  # 100.00 in minor units


class Command(BaseCommand):
    help = "Create the demo user, then run the web server and one worker until Ctrl-C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Port on 127.0.0.1.")

    def handle(self, *args, port: int, **options) -> None:
        self._ensure_demo_user()
        processes = self._start(port)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nLightSource is running at http://127.0.0.1:{port}/\n"
                f"Log in as {DEMO_USERNAME} / {DEMO_PASSWORD}, or sign up.\n"
                "Press Ctrl-C to stop.\n"
            )
        )
        self._supervise(processes)

    def _ensure_demo_user(self) -> None:
        User = get_user_model()
        user = User.objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            user = register_user(DEMO_USERNAME, "demo@example.com", DEMO_PASSWORD)
        wallet = wallet_for(user)
        if not LedgerEntry.objects.filter(wallet=wallet, kind="topup").exists():
            topup(user, DEMO_CREDIT, "demo credit")

    def _start(self, port: int) -> list[subprocess.Popen]:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        gunicorn = [
            sys.executable,
            "-m",
            "gunicorn",
            "lightsource.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            # One process, so the in-memory rate-limit counters are shared;
            # more processes need REDIS_URL.
            "--workers",
            "1",
            "--threads",
            "8",
            # Gunicorn's control socket defaults to one path in the home folder,
            # which two demos on one machine would share.
            "--no-control-socket",
            "--access-logfile",
            "-",
        ]
        env = os.environ.copy()
        return [
            subprocess.Popen(gunicorn, cwd=settings.BASE_DIR, env=env),
            subprocess.Popen([*manage, "runworker"], cwd=settings.BASE_DIR, env=env),
        ]

    def _supervise(self, processes: list[subprocess.Popen]) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)

        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.stdout.write("Stopped the web server and the worker.")
