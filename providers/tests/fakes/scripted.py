"""A fake vendor whose replies the test sets per path, and a recording context.

Used by the tests of the shared HTTP plumbing (providers.http, providers.download),
which need arbitrary statuses, headers and slow replies rather than one protocol.
"""

import socket
import time

from providers.adapters.base import VendorCall
from providers.tests.fakes.server import FakeVendor, Recorded, Reply


class ScriptedVendor(FakeVendor):
    """Serves the Reply routed for each path (query ignored); other paths get 404."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__("scripted", host)
        self.routes: dict[str, Reply] = {}
        self.delays: dict[str, float] = {}

    def route(self, path: str, reply: Reply, delay: float = 0.0) -> str:
        """Serve `reply` at `path` after `delay` seconds; return the full URL."""
        self.routes[path] = reply
        self.delays[path] = delay
        return self.url + path

    def __enter__(self) -> "ScriptedVendor":
        super().__enter__()
        # Clients that hang up early (timeouts, refused links) are the cases under
        # test, so the server's traceback for each of them is noise.
        self._server.handle_error = lambda request, client_address: None
        return self

    def reset(self) -> None:
        """Forget routes and recorded requests, so one server can serve many tests."""
        with self.lock:
            self.routes.clear()
            self.delays.clear()
            self.requests.clear()

    def handle(self, request: Recorded) -> Reply:
        path = request.path.split("?", 1)[0]
        time.sleep(self.delays.get(path, 0.0))
        return self.routes.get(path, Reply(404, {"detail": "Not found."}))


class RecordingContext:
    """JobContext that keeps recorded vendor calls and never stops the job."""

    def __init__(self) -> None:
        self.calls: list[VendorCall] = []
        self.percents: list[int] = []

    def progress(self, percent: int) -> None:
        self.percents.append(percent)

    def save_task_id(self, task_id: str) -> None:
        raise AssertionError(f"unexpected vendor task id {task_id!r}")

    def record_call(self, call: VendorCall) -> None:
        self.calls.append(call)

    def should_stop(self) -> bool:
        return False


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
