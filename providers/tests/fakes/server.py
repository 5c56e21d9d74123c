"""A threaded HTTP server on a loopback port, the base of every fake vendor.

Each fake subclasses FakeVendor, implements `handle(request)` for its protocol
and is driven by a scenario name chosen by the test. Requests are recorded so
tests can count submits and read what the adapter sent.
"""

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    # For streams: chunks written one by one with a pause between them.
    chunks: list[bytes] | None = None
    pause: float = 0.0


class FakeVendor:
    """Start with `with FakeVendor(scenario) as fake:`; `fake.url` is its base URL."""

    def __init__(self, scenario: str = "ok", host: str = "127.0.0.1") -> None:
        self.scenario = scenario
        self.host = host
        self.requests: list[Recorded] = []
        # Streams whose client closed the connection before the last chunk.
        self.closed_streams = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def count(self, method: str, path_prefix: str) -> int:
        with self.lock:
            return sum(
                1
                for r in self.requests
                if r.method == method and r.path.startswith(path_prefix)
            )

    def __enter__(self) -> "FakeVendor":
        self._server = ThreadingHTTPServer((self.host, 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        ).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(fake: FakeVendor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(self.command, self.path, dict(self.headers), body)
            with fake.lock:
                fake.requests.append(recorded)
            if not _write(self, fake.handle(recorded)):
                with fake.lock:
                    fake.closed_streams += 1

        do_GET = do_POST = do_DELETE = _serve

    return Handler


def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> bool:
    """Send `reply`. Return False when the client closed a stream before its end."""
    handler.send_response(reply.status)
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    if reply.chunks is not None:
        # No Content-Length: the stream ends when the connection closes.
        handler.send_header("Connection", "close")
        handler.end_headers()
        return _write_chunks(handler, reply)

    body = reply.body
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
        if "Content-Type" not in reply.headers:
            handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    return True


def _write_chunks(handler: BaseHTTPRequestHandler, reply: Reply) -> bool:
    handler.close_connection = True
    chunks = list(reply.chunks)
    for index, chunk in enumerate(chunks):
        try:
            handler.wfile.write(chunk)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return False
        if _closed_during(handler.connection, reply.pause):
            # A client may close as soon as it has read the last chunk.
            return index == len(chunks) - 1
    return True


def _closed_during(client: socket.socket, seconds: float) -> bool:
    """Wait `seconds`, or less when the client closes the connection first."""
    deadline = time.monotonic() + seconds
    readable, _, _ = select.select([client], [], [], seconds)
    if not readable:
        return False
    try:
        if not client.recv(1, socket.MSG_PEEK):
            return True
    except ConnectionResetError:
        return True
    # The client sent bytes instead of closing, so the pause goes on.
    time.sleep(max(0.0, deadline - time.monotonic()))
    return False
