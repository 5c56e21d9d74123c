import time
from dataclasses import asdict

import pytest
import urllib3.util.connection

from providers import download
from providers.download import check_url, download_result, is_public_address
from providers.errors import ProviderError
from providers.tests.fakes.media import png_bytes
from providers.tests.fakes.scripted import RecordingContext, ScriptedVendor, closed_port
from providers.tests.fakes.server import Reply

PNG = {"Content-Type": "image/png"}
REJECTED = (
    "The result link points to a private or reserved network address, "
    "so it was not downloaded."
)
# A public address that only a stubbed resolver returns; nothing connects to it.
PUBLIC_IP = "8.8.8.8"


@pytest.fixture(scope="module")
def server():
    # One server for the module, because each shutdown waits about 0.5 s.
    with ScriptedVendor() as fake:
        yield fake


@pytest.fixture(scope="module")
def alias_server():
    # Linux routes all of 127.0.0.0/8 to the loopback interface.
    with ScriptedVendor(host="127.0.0.2") as fake:
        yield fake


@pytest.fixture
def vendor(server: ScriptedVendor) -> ScriptedVendor:
    server.reset()
    return server


@pytest.fixture
def alias(alias_server: ScriptedVendor) -> ScriptedVendor:
    alias_server.reset()
    return alias_server


@pytest.fixture
def context() -> RecordingContext:
    return RecordingContext()


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything opens a connection through urllib3."""

    def reject(*args, **kwargs):
        raise AssertionError(f"unexpected connection to {args[0]!r}")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", reject)


def fetch(url: str, provider_url: str, context: RecordingContext, **options):
    options.setdefault("max_bytes", 1_000_000)
    options.setdefault("connect_timeout", 1.0)
    options.setdefault("read_timeout", 2.0)
    options.setdefault("total_timeout", 10.0)
    return download_result(
        url, provider_base_url=provider_url, context=context, **options
    )


def fetch_error(url: str, provider_url: str, context, **options) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        fetch(url, provider_url, context, **options)
    return caught.value


def stub_resolver(monkeypatch, addresses: list[str]) -> list[str]:
    """Make the guard's resolver return `addresses`; return the hosts it resolves."""
    requested_hosts: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        requested_hosts.append(host)
        return addresses

    monkeypatch.setattr(download, "resolve_host", resolve)
    return requested_hosts


def test_png_from_provider_host(vendor, context):
    url = vendor.route("/result.png", Reply(200, png_bytes(), PNG))
    result = fetch(url, vendor.url + "/v1", context)

    assert result.content == png_bytes()
    assert result.mime_type == "image/png"


def test_mime_parameters_dropped(vendor, context):
    headers = {"Content-Type": "Image/PNG; charset=binary"}
    url = vendor.route("/result.png", Reply(200, png_bytes(), headers))

    assert fetch(url, vendor.url, context).mime_type == "image/png"


def test_missing_mime_defaults(vendor, context):
    url = vendor.route("/blob", Reply(200, b"\x00\x01"))

    assert fetch(url, vendor.url, context).mime_type == "application/octet-stream"


def test_recorded_call(vendor, context):
    url = vendor.route("/result.png", Reply(200, png_bytes(), PNG))
    fetch(url + "?sig=s3cr3t&token=t0k&width=64", vendor.url, context)
    call = context.calls[0]

    assert call.method == "GET"
    assert call.url == f"{url}?sig=***&token=***&width=64"
    assert call.status == 200
    assert call.duration_ms >= 0
    assert call.request_excerpt == ""
    assert "PNG" not in call.response_excerpt
    assert "s3cr3t" not in str(asdict(call))


def test_other_loopback_alias_rejected(vendor, alias, context):
    url = alias.route("/result.png", Reply(200, png_bytes(), PNG))
    error = fetch_error(url, vendor.url, context)

    assert error.code == "result_download_failed"
    assert error.message == REJECTED
    assert error.retryable is False
    assert alias.requests == []
    assert context.calls[0].error == f"result_download_failed: {REJECTED}"


@pytest.mark.parametrize(
    "address",
    ["10.0.0.5", "169.254.169.254", "100.64.1.1", "::1", "fd00::1", "::ffff:127.0.0.1"],
)
def test_private_resolution_rejected(monkeypatch, no_connections, context, address):
    requested_hosts = stub_resolver(monkeypatch, [address])
    error = fetch_error("http://cdn.example.test/a.png", "http://gw.test", context)

    assert error.message == REJECTED
    assert requested_hosts == ["cdn.example.test"]


def test_any_private_address_rejects(monkeypatch, no_connections, context):
    stub_resolver(monkeypatch, [PUBLIC_IP, "192.168.1.20"])
    error = fetch_error("https://cdn.example.test/a.png", "http://gw.test", context)

    assert error.message == REJECTED


def test_unresolvable_host_rejected(monkeypatch, no_connections, context):
    def fail(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    monkeypatch.setattr(download, "resolve_host", fail)
    error = fetch_error("http://nowhere.example.test/a.png", "http://gw.test", context)

    assert error.message == "The result host could not be resolved."


def test_public_resolution_passes_guard(monkeypatch, no_connections):
    requested_hosts = stub_resolver(monkeypatch, [PUBLIC_IP, "2001:4860:4860::8888"])
    check_url("https://cdn.example.test:8443/a.png?sig=1", ("gw.test", 443))

    assert requested_hosts == ["cdn.example.test"]


def test_rebinding_caught_before_request(monkeypatch, vendor, context):
    # The guard's resolver returns a public address, but the socket reaches loopback.
    url = vendor.route("/result.png", Reply(200, png_bytes(), PNG))
    port = vendor.url.rsplit(":", 1)[1]
    stub_resolver(monkeypatch, [PUBLIC_IP])
    error = fetch_error(
        f"http://localhost:{port}/result.png", "http://gw.test", context
    )

    assert url.endswith("/result.png")
    assert error.message == REJECTED
    assert vendor.requests == []


def test_rebinding_on_redirect_caught(monkeypatch, vendor, alias, context):
    # The first hop is the provider; the redirect target's name rebinds to loopback.
    alias.route("/result.png", Reply(200, png_bytes(), PNG))
    port = alias.url.rsplit(":", 1)[1]
    location = f"http://rebound.test:{port}/result.png"
    url = vendor.route("/r", Reply(302, headers={"Location": location}))
    stub_resolver(monkeypatch, [PUBLIC_IP])
    monkeypatch.setattr(
        urllib3.util.connection,
        "create_connection",
        redirect_connections("rebound.test", "127.0.0.2"),
    )
    error = fetch_error(url, vendor.url, context)

    assert error.message == REJECTED
    assert vendor.count("GET", "/r") == 1
    assert alias.requests == []


def redirect_connections(name: str, address: str):
    """Return a create_connection that connects to `address` for the host `name`."""
    connect = urllib3.util.connection.create_connection

    def create_connection(target, *args, **kwargs):
        host, port = target
        return connect((address if host == name else host, port), *args, **kwargs)

    return create_connection


def test_provider_host_other_port_rejected(vendor, no_connections, context):
    provider = "http://127.0.0.1:8000"
    error = fetch_error(f"http://127.0.0.1:{closed_port()}/a.png", provider, context)

    assert error.message == REJECTED


def test_provider_default_port_trusted(no_connections):
    check_url("https://gw.lan/files/a.png", ("gw.lan", 443))
    check_url("https://gw.lan:443/files/a.png", ("gw.lan", 443))


def test_trickling_body_meets_total_deadline(vendor, context):
    # Each byte comes well within the read timeout, but the whole takes too long.
    chunks = [b"x"] * 40
    url = vendor.route("/trickle", Reply(200, headers=PNG, chunks=chunks, pause=0.05))
    started = time.monotonic()
    error = fetch_error(url, vendor.url, context, total_timeout=0.5)
    elapsed = time.monotonic() - started

    assert error.message == "The result download timed out."
    assert elapsed < 1.5


def test_redirect_within_provider(vendor, context):
    vendor.route("/result.png", Reply(200, png_bytes(), PNG))
    url = vendor.route("/r", Reply(302, headers={"Location": "/result.png"}))

    assert fetch(url, vendor.url, context).content == png_bytes()


def test_redirect_to_alias_rejected(vendor, alias, context):
    target = alias.route("/result.png", Reply(200, png_bytes(), PNG))
    url = vendor.route("/r", Reply(302, headers={"Location": target}))
    error = fetch_error(url, vendor.url, context)

    assert error.message == REJECTED
    assert vendor.count("GET", "/r") == 1
    assert alias.requests == []


def test_too_many_redirects(vendor, context):
    url = vendor.route("/loop", Reply(302, headers={"Location": "/loop"}))
    error = fetch_error(url, vendor.url, context, max_redirects=3)

    assert error.message == "The result link redirected too many times."
    assert vendor.count("GET", "/loop") == 4


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/a.png", "file:///etc/passwd", "gopher://x/", "http:///a.png"],
)
def test_scheme_rejected(no_connections, context, url):
    error = fetch_error(url, "http://127.0.0.1", context)

    assert error.code == "result_download_failed"
    assert "http or https" in error.message


@pytest.mark.parametrize("status", [403, 404, 410])
def test_expired_link(vendor, context, status):
    url = vendor.route("/result.png", Reply(status, b"<Error>AccessDenied</Error>"))
    error = fetch_error(url, vendor.url, context)

    assert error.message == (
        f"The result link expired before it could be downloaded (HTTP {status})."
    )
    assert context.calls[0].status == status


def test_server_error_generic(vendor, context):
    url = vendor.route("/result.png", Reply(502, b"bad gateway"))
    error = fetch_error(url, vendor.url, context)

    assert error.message == "The result could not be downloaded (HTTP 502)."


def test_declared_length_over_limit(vendor, context):
    url = vendor.route("/big", Reply(200, b"x" * 2000, PNG))
    error = fetch_error(url, vendor.url, context, max_bytes=1000)

    assert error.message == "The result is larger than the 1000-byte limit."


def test_streamed_body_over_limit(vendor, context):
    chunks = [b"x" * 400] * 5
    url = vendor.route("/big", Reply(200, headers=PNG, chunks=chunks))
    error = fetch_error(url, vendor.url, context, max_bytes=1000)

    assert error.message == "The result is larger than the 1000-byte limit."


def test_body_at_limit_accepted(vendor, context):
    chunks = [b"x" * 500] * 2
    url = vendor.route("/exact", Reply(200, headers=PNG, chunks=chunks))

    assert len(fetch(url, vendor.url, context, max_bytes=1000).content) == 1000


def test_slow_body_times_out(vendor, context):
    chunks = [b"x" * 100, b"y" * 100]
    url = vendor.route("/slow", Reply(200, headers=PNG, chunks=chunks, pause=0.6))
    error = fetch_error(url, vendor.url, context, read_timeout=0.1)

    assert error.message == "The result download timed out."


def test_slow_headers_time_out(vendor, context):
    url = vendor.route("/slow", Reply(200, png_bytes(), PNG), delay=0.5)
    error = fetch_error(url, vendor.url, context, read_timeout=0.1)

    assert error.message == "The result download timed out."


def test_connection_refused(context):
    provider = f"http://127.0.0.1:{closed_port()}"
    error = fetch_error(provider + "/a.png", provider, context)

    assert error.code == "result_download_failed"
    assert "connection failed" in error.message


def test_environment_proxy_ignored(vendor, context, monkeypatch):
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = vendor.route("/result.png", Reply(200, png_bytes(), PNG))

    assert fetch(url, vendor.url, context).content == png_bytes()


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.5",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fd00::1",
        "fe80::1%eth0",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "64:ff9b::a00:5",
    ],
)
def test_non_public_addresses(address):
    assert is_public_address(address) is False


@pytest.mark.parametrize("address", [PUBLIC_IP, "2001:4860:4860::8888"])
def test_public_addresses(address):
    assert is_public_address(address) is True
