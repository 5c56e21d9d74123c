"""Download vendor result files into memory, safely.

Only http and https URLs are fetched. Hosts that resolve to private, loopback,
link-local, reserved or cloud-metadata addresses are rejected, on every
redirect and again at each connected socket before a byte is sent, except the
provider's own configured host and port (a gateway on the LAN).
"""

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from functools import partial
from urllib.parse import urljoin

import requests
import urllib3.exceptions
from django.conf import settings
from django.utils.translation import gettext
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

from providers.adapters.base import (
    GenerationRequest,
    JobContext,
    ResultFile,
    VendorCall,
)
from providers.errors import ProviderError
from providers.http import USER_AGENT, redact_url

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
EXPIRED_STATUSES = (403, 404, 410)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRejected(Exception):
    """A connection reached an address the guard does not allow."""


def resolve_host(host: str, port: int) -> list[str]:
    """Return the addresses `host` resolves to; tests replace this to stub DNS."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def is_public_address(address: str) -> bool:
    """Return True when `address` is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(str(embedded))
        if ip.is_site_local:
            return False
    if ip.version == 4 and ip in _CGNAT:
        return False
    blocked = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )
    return ip.is_global and not blocked


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # IPv4-mapped, 6to4, Teredo and NAT64 addresses reach an IPv4 host.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_url(url: str, trusted: tuple[str, int]) -> None:
    """Raise result_download_failed unless `url` may be fetched.

    The URL must be http or https, and every address its host resolves to must be
    public, unless the URL's host and port are the provider's own (`trusted`).
    """
    try:
        parsed = parse_url(url)
    except ValueError:
        raise _failed(gettext("The result link is not a valid URL.")) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _failed(gettext("The result link is not an http or https URL."))

    host = _normal_host(parsed.host)
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    if (host, port) == trusted:
        return
    try:
        addresses = resolve_host(host, port)
    except (OSError, UnicodeError):
        raise _failed(gettext("The result host could not be resolved.")) from None
    if not addresses or not all(_is_public(address) for address in addresses):
        raise _rejected_host()


def download_for_job(
    url: str, request: GenerationRequest, context: JobContext
) -> ResultFile:
    """Download a result URL of `request` with the configured limit and timeouts."""
    return download_result(
        url,
        provider_base_url=request.base_url,
        context=context,
        max_bytes=settings.MAX_RESULT_BYTES,
        connect_timeout=settings.DOWNLOAD_CONNECT_TIMEOUT,
        read_timeout=settings.DOWNLOAD_READ_TIMEOUT,
        total_timeout=settings.DOWNLOAD_TOTAL_TIMEOUT,
    )


def download_result(
    url: str,
    *,
    provider_base_url: str,
    context: JobContext,
    max_bytes: int,
    connect_timeout: float,
    read_timeout: float,
    total_timeout: float,
    max_redirects: int = 5,
) -> ResultFile:
    """Fetch `url` with a size limit and return its bytes and declared type.

    Raises ProviderError("result_download_failed") for a rejected address, an
    error status (403 or 404 of an expired link), a timeout, a download that
    takes longer than `total_timeout` or a body over `max_bytes`. The real
    content type is checked later, by decoding, at ingest.
    """
    trusted = _host_and_port(provider_base_url)
    call = VendorCall(method="GET", url=redact_url(url, []), status=None, duration_ms=0)
    started = time.monotonic()
    download = _Download(
        trusted=trusted,
        max_bytes=max_bytes,
        timeout=(connect_timeout, read_timeout),
        deadline=started + total_timeout,
    )

    with _guarded_session(download.admit) as session, download.watchdog:
        try:
            result = download.fetch(session, url, call, max_redirects)
        except ProviderError as error:
            _record(context, call, started, error=str(error))
            logger.warning("result download failed url=%s error=%s", call.url, error)
            raise
    _record(context, call, started)
    return result


class _Download:
    """The limits of one download and the steps that enforce them."""

    def __init__(
        self,
        trusted: tuple[str, int],
        max_bytes: int,
        timeout: tuple[float, float],
        deadline: float,
    ) -> None:
        self.trusted = trusted
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.deadline = deadline
        self.watchdog = _Watchdog(deadline)

    def admit(self, host: str, port: int, sock: socket.socket) -> bool:
        """Watch a new connection's socket, and return whether its peer is allowed."""
        self.watchdog.watch(sock)
        return _peer_allowed(self.trusted, host, port, sock)

    def fetch(
        self, session: requests.Session, url: str, call: VendorCall, max_redirects: int
    ) -> ResultFile:
        # When the watchdog shuts the sockets down, a read fails or returns a
        # body cut short, so an expired deadline overrides either outcome.
        try:
            result = self._fetch(session, url, call, max_redirects)
        except ProviderError:
            if self.watchdog.expired:
                raise _timed_out() from None
            raise
        if self.watchdog.expired:
            raise _timed_out()
        return result

    def _fetch(
        self, session: requests.Session, url: str, call: VendorCall, max_redirects: int
    ) -> ResultFile:
        try:
            response = self._follow_redirects(session, url, max_redirects)
        except AddressRejected:
            raise _rejected_host() from None
        except requests.RequestException as exc:
            raise _transport_failure(exc) from exc

        with response:
            call.status = response.status_code
            _check_status(response.status_code)
            _check_declared_length(response, self.max_bytes)
            content = self._read_limited(response)

        mime_type = _mime_type(response.headers.get("Content-Type", ""))
        call.response_excerpt = f"Content-Type: {mime_type}; {len(content)} bytes"
        return ResultFile(content=content, mime_type=mime_type)

    def _follow_redirects(
        self, session: requests.Session, url: str, max_redirects: int
    ) -> requests.Response:
        for _ in range(max_redirects + 1):
            if time.monotonic() > self.deadline:
                raise _timed_out()
            check_url(url, self.trusted)
            response = self._get(session, url)
            if not response.is_redirect:
                return response
            response.close()
            try:
                url = urljoin(url, response.headers["Location"])
            except ValueError:
                raise _invalid_redirect() from None
        raise _failed(gettext("The result link redirected too many times."))

    def _get(self, session: requests.Session, url: str) -> requests.Response:
        try:
            return session.get(
                url, stream=True, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException:
            raise
        except ValueError:
            # requests parses the Location of a redirect even when it does not
            # follow it, and urlparse raises ValueError for some invalid ones.
            raise _invalid_redirect() from None

    def _read_limited(self, response: requests.Response) -> bytes:
        # read1 returns after a single read of the socket, so a server that sends
        # one byte at a time, each within the read timeout, still hits the deadline.
        # One bytearray takes such reads without a bytes object for each.
        content = bytearray()
        while True:
            if time.monotonic() > self.deadline:
                raise _timed_out()
            try:
                chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                raise _timed_out() from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise _connection_failed() from exc
            if not chunk:
                return bytes(content)
            if len(content) + len(chunk) > self.max_bytes:
                raise _too_large(self.max_bytes)
            content += chunk


class _Watchdog:
    """Timer that shuts down every socket of one download at its deadline.

    The read timeout bounds each socket read, but not the number of reads that
    the response headers, interim 1xx replies, chunk-size lines or a compressed
    body decoding to no bytes can take. The code checks the clock only between
    redirects and between body reads, so this thread ends the reads in between.
    NOTE: a socket is watched once connected, so name resolution and connecting
    (connect_timeout for each address) can still run past the deadline.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._lock = threading.Lock()
        # Duplicates of the download's sockets, so that shutting one down stays
        # safe after urllib3 closes the original, or TLS takes it over.
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "_Watchdog":
        delay = max(self.deadline - time.monotonic(), 0.0)
        self._timer = threading.Timer(delay, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down at the deadline, or now when it has passed."""
        with self._lock:
            duplicate = sock.dup()
            self._sockets.append(duplicate)
            if self.expired:
                _shut_down(duplicate)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut_down(sock)


def _shut_down(sock: socket.socket) -> None:
    # shutdown() acts on the connection, not the descriptor, so a read blocked
    # on the original socket returns at once.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _guarded_session(admit) -> requests.Session:
    """Return a session whose new connections must pass `admit(host, port, sock)`."""
    session = requests.Session()
    # Proxies from the environment would hide the address the guard checks.
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    adapter = _GuardedAdapter(admit)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _peer_allowed(trusted: tuple[str, int], host: str, port: int, sock) -> bool:
    # DNS rebinding: a host may resolve to a public address for check_url and
    # to an internal one for the connection, so the connected address decides.
    if (_normal_host(host), port) == trusted:
        return True
    try:
        peer = sock.getpeername()[0]
    except OSError:
        return False
    return _is_public(peer)


class _PeerCheck:
    """Connection mixin that closes a new socket whose peer is not allowed."""

    def __init__(self, *args, peer_allowed, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peer_allowed = peer_allowed

    def _new_conn(self):
        sock = super()._new_conn()
        if not self.peer_allowed(self.host, self.port, sock):
            sock.close()
            raise AddressRejected(self.host)
        return sock


class _CheckedHTTPConnection(_PeerCheck, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_PeerCheck, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    """Transport adapter whose pools open peer-checked connections."""

    def __init__(self, peer_allowed) -> None:
        self.peer_allowed = peer_allowed
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        # A pool passes the keyword arguments it does not know to each connection.
        self.poolmanager.pool_classes_by_scheme = {
            "http": partial(_CheckedHTTPPool, peer_allowed=self.peer_allowed),
            "https": partial(_CheckedHTTPSPool, peer_allowed=self.peer_allowed),
        }


def _check_status(status: int) -> None:
    if status == 200:
        return
    if status in EXPIRED_STATUSES:
        raise _failed(
            gettext(
                "The result link expired before it could be downloaded "
                "(HTTP %(status)s)."
            )
            % {"status": status}
        )
    raise _failed(
        gettext("The result could not be downloaded (HTTP %(status)s).")
        % {"status": status}
    )


def _check_declared_length(response: requests.Response, max_bytes: int) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)


def _transport_failure(exc: requests.RequestException) -> ProviderError:
    # requests raises ConnectionError for a read timeout inside the body.
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
        return _timed_out()
    return _connection_failed()


def _record(
    context: JobContext, call: VendorCall, started: float, error: str = ""
) -> None:
    call.duration_ms = round((time.monotonic() - started) * 1000)
    call.error = error
    context.record_call(call)


def _is_public(address: str) -> bool:
    try:
        return is_public_address(address)
    except ValueError:
        return False


def _host_and_port(url: str) -> tuple[str, int]:
    """Return the normalised host and the port, explicit or default, of `url`."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return ("", 0)
    port = parsed.port or DEFAULT_PORTS.get(parsed.scheme or "", 0)
    return (_normal_host(parsed.host or ""), port)


def _normal_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _mime_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower() or "application/octet-stream"


def _timed_out() -> ProviderError:
    return _failed(gettext("The result download timed out."))


def _invalid_redirect() -> ProviderError:
    return _failed(gettext("The result link redirected to an invalid URL."))


def _connection_failed() -> ProviderError:
    return _failed(
        gettext("The result could not be downloaded: the connection failed.")
    )


def _too_large(max_bytes: int) -> ProviderError:
    return _failed(
        gettext("The result is larger than the %(max_bytes)s-byte limit.")
        % {"max_bytes": max_bytes}
    )


def _rejected_host() -> ProviderError:
    return _failed(
        gettext(
            "The result link points to a private or reserved network address, "
            "so it was not downloaded."
        )
    )


def _failed(message: str) -> ProviderError:
    return ProviderError("result_download_failed", message)
