"""A fake vendor on loopback that responds to each GET after a delay.

`GET /sleep/<seconds>` waits that many seconds (a float) and returns 200 with a
small JSON body. Every request gets a thread of its own, so hundreds of
requests wait side by side, as they would on a real vendor.

Run: python -m benchmarks.slow_vendor [--port PORT]. The first line on stdout
is "listening 127.0.0.1:<port>"; SIGTERM or SIGINT stops the server.
"""

import argparse
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLEEP_PATH = re.compile(r"^/sleep/(\d+(?:\.\d+)?)$")


class SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        match = SLEEP_PATH.match(self.path)
        if match is None:
            self._send(404, {"detail": f"Not found: {self.path}; use /sleep/<s>."})
            return
        time.sleep(float(match.group(1)))
        self._send(200, {"ok": True})

    def _send(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client (a killed worker) went away during the sleep.
            pass

    def log_message(self, format: str, *args) -> None:
        # One line per request would cost more than the benchmark measures.
        pass


class SlowServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when 200 jobs connect at once.
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 picks one."
    )
    options = parser.parse_args()

    server = SlowServer(("127.0.0.1", options.port), SlowHandler)
    host, port = server.server_address[:2]
    print(f"listening {host}:{port}", flush=True)

    def stop(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
