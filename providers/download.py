"""Download vendor result files into memory, safely.

Only http and https URLs are fetched. Hosts that resolve to private, loopback,
link-local, reserved or cloud-metadata addresses are rejected, on every
redirect, except the provider's own configured host (a gateway on the LAN).
"""

import ipaddress
import logging
import socket
import time
from urllib.parse import urljoin

import requests
from django.conf import settings
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


def check_url(url: str, trusted_host: str) -> None:
    """Raise result_download_failed unless `url` may be fetched.

    The URL must be http or https, and every address its host resolves to must be
    public, unless the host is the provider's own (`trusted_host`).
    """
    try:
        parsed = parse_url(url)
    except ValueError:
        raise _failed("The result link is not a valid URL.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _failed("The result link is not an http or https URL.")

    host = _normal_host(parsed.host)
    if host == trusted_host:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = resolve_host(host, port)
    except (OSError, UnicodeError):
        raise _failed("The result host could not be resolved.") from None
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
    )


def download_result(
    url: str,
    *,
    provider_base_url: str,
    context: JobContext,
    max_bytes: int,
    connect_timeout: float,
    read_timeout: float,
    max_redirects: int = 5,
) -> ResultFile:
    """Fetch `url` with a size limit and return its bytes and declared type.

    Raises ProviderError("result_download_failed") for a refused address, an
    error status (403 or 404 of an expired link), a timeout or a body over
    `max_bytes`. The real content type is checked later, by decoding, at ingest.
    """
    trusted_host = _host_of(provider_base_url)
    call = VendorCall(method="GET", url=redact_url(url, []), status=None, duration_ms=0)
    started = time.monotonic()

    with requests.Session() as session:
        # Proxies from the environment would hide the address the guard checked.
        session.trust_env = False
        session.headers["User-Agent"] = USER_AGENT
        try:
            timeout = (connect_timeout, read_timeout)
            result = _download(
                session, url, trusted_host, call, max_bytes, timeout, max_redirects
            )
        except ProviderError as error:
            _record(context, call, started, error=str(error))
            logger.warning("result download failed url=%s error=%s", call.url, error)
            raise
    _record(context, call, started)
    return result


def _download(
    session: requests.Session,
    url: str,
    trusted_host: str,
    call: VendorCall,
    max_bytes: int,
    timeout: tuple[float, float],
    max_redirects: int,
) -> ResultFile:
    try:
        response = _follow_redirects(session, url, trusted_host, timeout, max_redirects)
    except requests.RequestException as exc:
        raise _transport_failure(exc) from exc

    with response:
        call.status = response.status_code
        _check_status(response.status_code)
        _check_declared_length(response, max_bytes)
        try:
            content = _read_limited(response, max_bytes)
        except requests.RequestException as exc:
            raise _transport_failure(exc) from exc

    mime_type = _mime_type(response.headers.get("Content-Type", ""))
    call.response_excerpt = f"Content-Type: {mime_type}; {len(content)} bytes"
    return ResultFile(content=content, mime_type=mime_type)


def _follow_redirects(
    session: requests.Session,
    url: str,
    trusted_host: str,
    timeout: tuple[float, float],
    max_redirects: int,
) -> requests.Response:
    for _ in range(max_redirects + 1):
        check_url(url, trusted_host)
        response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
        _check_peer(response, url, trusted_host)
        if not response.is_redirect:
            return response
        response.close()
        url = urljoin(url, response.headers["Location"])
    raise _failed("The result link redirected too many times.")


def _check_peer(response: requests.Response, url: str, trusted_host: str) -> None:
    # DNS rebinding: the address actually connected to is checked again, after
    # the request was sent but before any of the body is read.
    if _host_of(url) == trusted_host:
        return
    peer = _peer_address(response)
    if peer is None or not _is_public(peer):
        response.close()
        raise _rejected_host()


def _peer_address(response: requests.Response) -> str | None:
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return None
    try:
        return sock.getpeername()[0]
    except OSError:
        return None


def _check_status(status: int) -> None:
    if status == 200:
        return
    if status in EXPIRED_STATUSES:
        raise _failed(
            f"The result link expired before it could be downloaded (HTTP {status})."
        )
    raise _failed(f"The result could not be downloaded (HTTP {status}).")


def _check_declared_length(response: requests.Response, max_bytes: int) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)


def _read_limited(response: requests.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _transport_failure(exc: requests.RequestException) -> ProviderError:
    # requests raises ConnectionError for a read timeout inside the body.
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
        return _failed("The result download timed out.")
    return _failed("The result could not be downloaded: the connection failed.")


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


def _host_of(url: str) -> str:
    try:
        host = parse_url(url).host
    except ValueError:
        return ""
    return _normal_host(host or "")


def _normal_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _mime_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower() or "application/octet-stream"


def _too_large(max_bytes: int) -> ProviderError:
    return _failed(f"The result is larger than the {max_bytes}-byte limit.")


def _rejected_host() -> ProviderError:
    return _failed(
        "The result link points to a private or reserved network address, "
        "so it was not downloaded."
    )


def _failed(message: str) -> ProviderError:
    return ProviderError("result_download_failed", message)
