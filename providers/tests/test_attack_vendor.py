"""Attacks on the vendor plumbing by a vendor, or by anyone who controls its replies.

Every server here is a fake on loopback: 127.0.0.1 is the provider and 127.0.0.2
is an internal service that the worker must never be made to call.
Names other than loopback go through the stubbed resolver in providers.download.
"""

import base64
import contextlib
import dataclasses
import gzip
import json
import socket
import threading
import time
import tracemalloc

import pytest
import urllib3.util.connection

from providers import download
from providers.adapters.openai_images import OpenAIImagesAdapter
from providers.adapters.openai_videos import OpenAIVideosAdapter
from providers.adapters.sora2_chat import Sora2ChatAdapter
from providers.download import download_result
from providers.errors import ProviderError
from providers.http import VendorClient
from providers.tests.fakes.media import mp4_bytes, png_bytes
from providers.tests.fakes.scripted import RecordingContext, ScriptedVendor
from providers.tests.fakes.server import Reply
from providers.tests.openai_jobs import RecordingContext as TaskContext
from providers.tests.openai_jobs import direct_request

API_KEY = "sk-attack-7d41c0de9b2a4f6e8c1d3b5a7e9f0a2c"
PNG = {"Content-Type": "image/png"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def provider_server():
    with ScriptedVendor() as fake:
        yield fake


@pytest.fixture(scope="module")
def internal_server():
    # Linux routes all of 127.0.0.0/8 to the loopback interface.
    with ScriptedVendor(host="127.0.0.2") as fake:
        yield fake


@pytest.fixture
def vendor(provider_server) -> ScriptedVendor:
    provider_server.reset()
    return provider_server


@pytest.fixture
def internal(internal_server) -> ScriptedVendor:
    internal_server.reset()
    return internal_server


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything opens a connection through urllib3."""

    def reject(*args, **kwargs):
        raise AssertionError(f"unexpected connection to {args[0]!r}")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", reject)


def keyed_request(base_url: str, kind: str = "image", **fields):
    request = direct_request(kind, base_url)
    return dataclasses.replace(request, api_key=API_KEY, **fields)


def make_client(base_url: str, context) -> VendorClient:
    return VendorClient(
        keyed_request(base_url), context, connect_timeout=1.0, read_timeout=2.0
    )


def fetch_error(
    url: str, provider_url: str, max_bytes=1_000_000, total_timeout=10.0
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        download_result(
            url,
            provider_base_url=provider_url,
            context=RecordingContext(),
            max_bytes=max_bytes,
            connect_timeout=1.0,
            read_timeout=2.0,
            total_timeout=total_timeout,
        )
    return caught.value


@contextlib.contextmanager
def raw_server(pieces: list[bytes], pause: float):
    """Serve one connection on loopback: write `pieces` with `pause` seconds between.

    Yields the server's base URL. The bytes go out as they are, so a test can
    send what ScriptedVendor cannot: headers cut anywhere, or interim replies.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as client:
            client.recv(65536)
            for piece in pieces:
                client.sendall(piece)
                time.sleep(pause)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        thread.join(timeout=10)


# The bearer key and the host check of VendorClient.


def test_backslash_url_keeps_key_home(vendor, internal):
    # urlsplit() reads the host after the "@", urllib3 (and so requests) reads
    # the host before the backslash: the check and the connection disagree.
    internal.route("/steal", Reply(200, {"ok": True}))
    internal_port = internal.url.rsplit(":", 1)[1]
    provider_host = vendor.url.removeprefix("http://")
    link = f"http://127.0.0.2:{internal_port}\\@{provider_host}/steal"
    client = make_client(vendor.url, RecordingContext())

    with pytest.raises(ProviderError):
        client.send("GET", link)

    leaked = [r.headers.get("Authorization") for r in internal.requests]
    assert leaked == []


# Redirects from the vendor's own API.


def test_video_content_redirect_guarded(vendor, internal):
    # OpenAI's /content may reply with a redirect; the adapter follows it
    # without the address guard that every other result download goes through.
    internal.route(
        "/internal.mp4", Reply(200, mp4_bytes(), {"Content-Type": "video/mp4"})
    )
    vendor.route("/v1/videos/vid_1", Reply(200, {"id": "vid_1", "status": "completed"}))
    vendor.route(
        "/v1/videos/vid_1/content",
        Reply(302, headers={"Location": internal.url + "/internal.mp4"}),
    )
    request = keyed_request(
        vendor.url,
        kind="video",
        remote_task_id="vid_1",
        params={"size": "1280x720", "duration": 4},
    )

    try:
        OpenAIVideosAdapter().generate(request, TaskContext())
        outcome = "completed"
    except ProviderError as error:
        outcome = error.code

    assert [r.path for r in internal.requests] == []
    assert outcome == "result_download_failed"


# Size limits on results that arrive inline.


def test_inline_image_over_result_limit(vendor, settings):
    content = png_bytes(size="256x256", seed=3)
    settings.MAX_RESULT_BYTES = len(content) // 4
    encoded = base64.b64encode(content).decode()
    vendor.route(
        "/v1/images/generations", Reply(200, {"data": [{"b64_json": encoded}]})
    )
    request = keyed_request(vendor.url, params={"size": "1024x1024", "n": 1})

    with pytest.raises(ProviderError) as caught:
        OpenAIImagesAdapter().generate(request, TaskContext())

    assert caught.value.code in ("result_download_failed", "result_invalid")


# The API key in what users and staff read.


def test_auth_error_message_hides_key_prefix(vendor):
    # The vendor's message is shortened to 300 characters before the key is
    # redacted, so a key across the cut leaves its first characters behind.
    message = "Incorrect API key provided. " + "Check your account. " * 13 + API_KEY
    vendor.route("/x", Reply(401, {"error": {"message": message}}))
    client = make_client(vendor.url, RecordingContext())

    with pytest.raises(ProviderError) as caught:
        client.send("GET", "/x")

    assert caught.value.code == "provider_auth"
    assert API_KEY[:8] not in caught.value.message


def test_stream_error_event_hides_key(vendor):
    # A gateway that echoes the caller's key in an error event.
    event = {"error": {"message": f"upstream rejected token {API_KEY}"}}
    chunks = [f"data: {json.dumps(event)}\n\n".encode()]
    vendor.route(
        "/v1/chat/completions",
        Reply(200, headers={"Content-Type": "text/event-stream"}, chunks=chunks),
    )
    request = keyed_request(vendor.url, kind="video", remote_model="sora-video-10s")

    with pytest.raises(ProviderError) as caught:
        Sora2ChatAdapter().generate(request, RecordingContext())

    assert API_KEY not in caught.value.message


# Address tricks in result links: each must be refused before any connection.


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/a.png",
        "http://0x7f000001/a.png",
        "http://0177.0.0.1/a.png",
        "http://127.1/a.png",
        "http://0/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://[::ffff:7f00:1]/a.png",
        "http://[::1]/a.png",
        "http://localhost/a.png",
        "http://LOCALHOST./a.png",
    ],
)
def test_numeric_loopback_forms_refused(no_connections, url):
    error = fetch_error(url, "https://gateway.example.test")

    assert error.code == "result_download_failed"
    assert "private or reserved" in error.message


def test_userinfo_trick_refused(monkeypatch, no_connections):
    resolved: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["169.254.169.254"]

    monkeypatch.setattr(download, "resolve_host", resolve)
    error = fetch_error(
        "http://gateway.example.test@metadata.example.test/a.png",
        "https://gateway.example.test",
    )

    assert resolved == ["metadata.example.test"]
    assert "private or reserved" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://127.0.0.1:6379/INFO",
        "ftp://127.0.0.1/a.png",
        "data:image/png;base64,AAAA",
        "//127.0.0.2/a.png",
    ],
)
def test_other_schemes_refused(no_connections, url):
    error = fetch_error(url, "http://127.0.0.1")

    assert "http or https" in error.message


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "gopher://127.0.0.2/_x", "http://[::ffff:127.0.0.2]/a.png"],
)
def test_redirect_to_refused_target(vendor, internal, location):
    url = vendor.route("/r", Reply(302, headers={"Location": location}))
    error = fetch_error(url, vendor.url)

    assert error.code == "result_download_failed"
    assert internal.requests == []


def test_gzip_bomb_stops_at_limit(vendor):
    bomb = gzip.compress(b"\x00" * 20_000_000)
    headers = {"Content-Type": "image/png", "Content-Encoding": "gzip"}
    url = vendor.route("/bomb.png", Reply(200, bomb, headers))
    error = fetch_error(url, vendor.url)

    assert "limit" in error.message


def test_endless_body_stops_at_limit(vendor):
    chunks = [b"\x00" * 65536] * 64
    url = vendor.route("/endless.png", Reply(200, headers=PNG, chunks=chunks))
    error = fetch_error(url, vendor.url, max_bytes=200_000)

    assert "limit" in error.message


def test_recorded_calls_hide_key(vendor):
    body = {"error": {"message": f"bad key {API_KEY}"}, "echo": API_KEY}
    vendor.route("/x", Reply(500, body))
    context = RecordingContext()
    client = make_client(vendor.url, context)

    with pytest.raises(ProviderError) as caught:
        client.send("POST", "/x", json={"prompt": API_KEY})

    recorded = json.dumps([dataclasses.asdict(call) for call in context.calls])
    assert API_KEY not in recorded
    assert API_KEY not in caught.value.message


# The total deadline, against replies that keep each read under the read timeout.

PNG_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
TRICKLE = 40
TRICKLE_PAUSE = 0.05


def timed_fetch_error(base_url: str) -> tuple[ProviderError, float]:
    started = time.monotonic()
    error = fetch_error(base_url + "/a.png", base_url, total_timeout=0.5)
    return error, time.monotonic() - started


def test_trickled_headers_meet_deadline():
    # One header name, a byte at a time: each read returns well within the
    # read timeout, and the body, where the deadline is checked, never starts.
    pieces = [PNG_HEAD] + [b"X"] * TRICKLE + [b": 1\r\n\r\nbody"]
    with raw_server(pieces, TRICKLE_PAUSE) as base_url:
        error, elapsed = timed_fetch_error(base_url)

    assert error.message == "The result download timed out."
    assert elapsed < 1.5


def test_endless_continues_meet_deadline():
    # http.client reads and drops any number of 100 Continue replies.
    pieces = [b"HTTP/1.1 100 Continue\r\n\r\n"] * TRICKLE + [PNG_HEAD + b"\r\nx"]
    with raw_server(pieces, TRICKLE_PAUSE) as base_url:
        error, elapsed = timed_fetch_error(base_url)

    assert error.message == "The result download timed out."
    assert elapsed < 1.5


def test_empty_gzip_meets_deadline():
    # A gzip header with a comment decodes to no bytes, and read1() keeps
    # reading the socket until it has decoded some, so it never returns.
    gzip_with_comment = b"\x1f\x8b\x08\x10\x00\x00\x00\x00\x00\xff"
    head = PNG_HEAD + b"Content-Encoding: gzip\r\n\r\n" + gzip_with_comment
    with raw_server([head] + [b"c"] * TRICKLE, TRICKLE_PAUSE) as base_url:
        error, elapsed = timed_fetch_error(base_url)

    assert error.message == "The result download timed out."
    assert elapsed < 1.5


def test_invalid_redirect_location_fails():
    reply = b"HTTP/1.1 302 Found\r\nLocation: http://[::1/a.png\r\n"
    with raw_server([reply + b"Content-Length: 0\r\n\r\n"], 0) as base_url:
        error = fetch_error(base_url + "/a.png", base_url)

    assert error.code == "result_download_failed"


def test_tiny_reads_keep_memory_small():
    # Each read of one byte kept as its own bytes object costs about 33 bytes
    # of memory, so a body sent a byte at a time took far more than its size.
    body_size = 50_000
    pieces = [PNG_HEAD + b"\r\n"] + [b"x"] * body_size
    with raw_server(pieces, 0) as base_url:
        tracemalloc.start()
        try:
            content = download_result(
                base_url + "/a.png",
                provider_base_url=base_url,
                context=RecordingContext(),
                max_bytes=1_000_000,
                connect_timeout=1.0,
                read_timeout=2.0,
                total_timeout=30.0,
            ).content
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert len(content) == body_size
    # The bound leaves room for the session, its threads and the final copy.
    assert peak < 10 * body_size
