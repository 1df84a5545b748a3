"""The one outbound HTTP client: httpx behind an SSRF guard.

Every request a workflow makes (``http_request`` nodes, tools) goes through ``GuardedClient``:

* only ``http``/``https``;
* the host is resolved once (``socket.getaddrinfo``, which also decodes odd IPv4 spellings such
  as ``2130706433`` or ``0x7f.1``) and the request is refused if ANY address is loopback,
  private, link-local, multicast, reserved, unspecified, CGNAT, not globally routable, or an
  IPv6 form embedding such an IPv4 address — unless the origin is allow-listed. Cloud metadata
  addresses are refused even for allow-listed origins (no workflow needs them, and an
  allow-listed name that re-resolves to them is exactly the attack);
* the connection goes to the address that was checked (pinning, against DNS rebinding): the
  URL's host is rewritten to that IP while the ``Host`` header and the TLS SNI / certificate
  check (httpcore's ``sni_hostname`` extension) keep the original name. This keeps the stock
  httpx transport (pooling, TLS, HTTP/1.1) instead of a custom network backend, and works with
  any ``transport`` passed in. Pools are keyed by the IP, so https gets one pool per host name
  (a TLS session verified for one name is never reused for another);
* redirects are never followed by httpx: up to ``MAX_REDIRECTS`` are followed here, each hop
  checked again; caller headers are dropped when a hop changes origin (they may carry secrets);
* the response body is read as a stream and refused past ``HTTP_MAX_RESPONSE_BYTES`` (counted
  after decompression, so a gzip bomb is refused too), within an overall deadline;
* ``request_retrying`` retries transport errors and 429/5xx answers (tenacity, exponential
  backoff with jitter); a blocked URL or an oversize body is never retried;
* every hop goes through its origin's circuit breaker (runtime/breakers.py, kind ``http``, state
  shared through Redis): ``HTTP_BREAKER_FAILS`` consecutive connection errors, timeouts or 5xx
  answers, from any worker, open it, and requests to that host then fail at once with
  :class:`HostUnavailable` (not retried) for ``HTTP_BREAKER_RESET_S``; the node's error edge or
  default takes over.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from core.settings import Settings, get_settings

MAX_REDIRECTS = 3
#: TLS connection pools kept (one per host name); the least recently used is closed beyond it.
MAX_TLS_POOLS = 64
REDIRECT_CODES = {301, 302, 303, 307, 308}
DEFAULT_PORTS = {"http": 80, "https": 443}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedURL(ValueError):
    """The URL's scheme, host or resolved address is not allowed for outbound requests."""


class ResponseTooLarge(RuntimeError):
    """The response body exceeded the configured size cap."""


class HostUnavailable(RuntimeError):
    """The host's circuit is open: it failed repeatedly, so the request was not sent."""


class _ServerError(Exception):
    """A 5xx answer, raised inside the breaker so it counts as a failure, then returned."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _healthy_outcome(exc: BaseException) -> bool:
    """Errors that say nothing about the host's health (an oversize body, a caller bug)."""
    return not isinstance(exc, httpx.TransportError | _ServerError)


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


#: Called after every attempt with (attempt number, status or None, latency ms, error class name or None).
OnAttempt = Callable[[int, int | None, float, str | None], None]


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address must not be contacted, or ``None`` when it is a public address."""
    if ip in METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 spellings of an IPv4 address are judged by that IPv4 address.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"an IPv6 form of {embedded} ({inner})" if inner else None
    checks = [
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("carrier-grade NAT", isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    ]
    for name, hit in checks:
        if hit:
            return f"{'an' if name[0] in 'aeiou' else 'a'} {name} address"
    return None


def origin_of(url: httpx.URL | str) -> str:
    """``scheme://host:port`` with the scheme and host lower-cased and the port explicit."""
    u = httpx.URL(url) if isinstance(url, str) else url
    scheme = u.scheme.lower()
    host = u.host.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = u.port or DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{host}:{port}"


def _parse(url: str, params: Mapping[str, Any] | None = None) -> httpx.URL:
    try:
        return httpx.URL(url, params=params) if params else httpx.URL(url)
    except httpx.InvalidURL as e:
        raise BlockedURL(f"refusing an invalid URL: {e}") from None


class GuardedClient:
    """``httpx.Client`` wrapper with the SSRF guard, pinning, manual redirects and a size cap.

    ``verify`` is httpx's: True (system CAs), or an ``ssl.SSLContext`` for a private CA."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        allow_origins: list[str] | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        origins = self.settings.ssrf_allow_origins if allow_origins is None else allow_origins
        self.allow_origins = {origin_of(o) for o in origins}
        self.max_bytes = self.settings.HTTP_MAX_RESPONSE_BYTES
        self._transport = transport
        self._verify = verify
        self._clients: OrderedDict[str, httpx.Client] = OrderedDict()
        self._lock = threading.Lock()

    def _client_for(self, url: httpx.URL) -> httpx.Client:
        """One pooled client per TLS host name. Pinned URLs name the IP, and httpcore pools by
        origin: a shared pool could reuse a TLS session verified for one name to send another
        name's request (and its credentials) to the same IP. Plain http shares one pool."""
        key = url.host if url.scheme == "https" and self._transport is None else ""
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # trust_env=False: an environment proxy would resolve the name itself and undo the pinning.
                client = httpx.Client(
                    transport=self._transport, verify=self._verify, follow_redirects=False, trust_env=False
                )
                self._clients[key] = client
                if len(self._clients) > MAX_TLS_POOLS:
                    # Not closed here: another thread may be mid-request on it; GC closes it.
                    self._clients.popitem(last=False)
            self._clients.move_to_end(key)
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def __enter__(self) -> GuardedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, url: httpx.URL | str) -> IPAddress:
        """Validate ``url`` and return the address to connect to; raise ``BlockedURL``."""
        u = httpx.URL(url) if isinstance(url, str) else url
        if u.scheme not in ("http", "https"):
            raise BlockedURL(f"only http and https URLs may be requested, not '{u.scheme}:'")
        if not u.host:
            raise BlockedURL(f"the URL '{u}' has no host")
        port = u.port or DEFAULT_PORTS[u.scheme]
        try:
            infos = socket.getaddrinfo(u.host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise httpx.ConnectError(f"cannot resolve host '{u.host}': {e}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise httpx.ConnectError(f"host '{u.host}' has no address")
        allowed = origin_of(u) in self.allow_origins
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason and (not allowed or ip in METADATA):
                raise BlockedURL(
                    f"refusing to contact {origin_of(u)}: it resolves to {ip}, {reason} "
                    "(allow-list the origin in FLOWDESK_SSRF_ALLOW_ORIGINS if this is intended)"
                )
        return addresses[0]

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        timeout: float = 10.0,
    ) -> httpx.Response:
        """Send one request (following up to 3 checked redirects); the body is fully read."""
        if not timeout or timeout <= 0:
            raise ValueError("a positive timeout is required")
        deadline = time.monotonic() + timeout
        current = _parse(url, params)
        method = method.upper()
        hdrs = dict(headers or {})
        body = json
        for _hop in range(MAX_REDIRECTS + 1):
            resp = self._send_pinned(method, current, hdrs, body, deadline)
            location = resp.headers.get("location")
            if resp.status_code not in REDIRECT_CODES or not location:
                return resp
            try:
                nxt = current.join(location)
            except httpx.InvalidURL as e:
                raise BlockedURL(f"refusing a redirect to an invalid URL: {e}") from None
            if origin_of(nxt) != origin_of(current):
                hdrs = {}
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None
            current = nxt
        raise httpx.TooManyRedirects(
            f"more than {MAX_REDIRECTS} redirects from {url}", request=httpx.Request(method, current)
        )

    def request_retrying(
        self,
        method: str,
        url: str,
        *,
        retries: int = 0,
        success: Container[int] = range(200, 300),
        attempt_timeout: Callable[[], float] = lambda: 10.0,
        on_attempt: OnAttempt | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``request`` with up to ``retries`` more attempts on transport errors and on 429/5xx
        answers not in ``success``. Returns the last response; re-raises the last error.
        ``attempt_timeout`` is asked before each attempt (a node passes its time left), and no
        backoff sleeps longer than it."""
        attempt = 0

        def once() -> httpx.Response:
            nonlocal attempt
            attempt += 1
            started = time.perf_counter()
            status: int | None = None
            error: str | None = None
            try:
                resp = self.request(method, url, timeout=attempt_timeout(), **kwargs)
                status = resp.status_code
            except Exception as exc:
                error = type(exc).__name__
                raise
            finally:
                if on_attempt is not None:
                    on_attempt(attempt, status, (time.perf_counter() - started) * 1000, error)
            if status not in success and (status == 429 or status >= 500):
                raise _RetryableStatus(resp)
            return resp

        backoff = wait_exponential_jitter(multiplier=0.2, jitter=0.2, max=4.0)

        def wait(state: RetryCallState) -> float:
            return min(backoff(state), max(0.0, attempt_timeout() - 0.05))

        retrying = Retrying(
            stop=stop_after_attempt(retries + 1),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, httpx.TransportError | _RetryableStatus)),
            reraise=True,
        )
        try:
            return retrying(once)
        except _RetryableStatus as exc:
            return exc.response

    def _send_pinned(
        self, method: str, url: httpx.URL, headers: dict[str, str], body: Any, deadline: float
    ) -> httpx.Response:
        ip = self.check(url)  # a blocked URL is refused before the breaker: it is not the host's fault
        import pybreaker

        from runtime import breakers

        origin = origin_of(url)
        breaker = breakers.breaker_for("http", origin, self.settings, exclude=[_healthy_outcome])
        try:
            # ``calling()`` holds the breaker's lock for the state check only, not the request.
            with breaker.calling():
                resp = self._send_to(ip, method, url, headers, body, deadline)
                if resp.status_code >= 500:
                    raise _ServerError(resp)
                return resp
        except _ServerError as exc:
            return exc.response
        except pybreaker.CircuitBreakerError:
            raise HostUnavailable(
                f"{origin} is unavailable: its circuit is open after {breaker.fail_max} consecutive "
                f"failures; not retrying for up to {breaker.reset_timeout:g}s"
            ) from None

    def _send_to(
        self, ip: IPAddress, method: str, url: httpx.URL, headers: dict[str, str], body: Any, deadline: float
    ) -> httpx.Response:
        host_header = url.netloc.decode("ascii")
        pinned = url.copy_with(host=str(ip))
        left = max(0.001, deadline - time.monotonic())
        client = self._client_for(url)
        req = client.build_request(
            method,
            pinned,
            headers={**{k: v for k, v in headers.items() if k.lower() != "host"}, "Host": host_header},
            json=body,
            timeout=httpx.Timeout(left),
            extensions={"sni_hostname": url.host},
        )
        resp = client.send(req, stream=True)
        try:
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise ResponseTooLarge(self._too_large(url))
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise ResponseTooLarge(self._too_large(url))
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"reading {url.host} took longer than the timeout")
                chunks.append(chunk)
        finally:
            resp.close()
        # Re-wrap the decoded body; the request shown to callers carries the original URL.
        skip = {"content-encoding", "content-length", "transfer-encoding"}
        return httpx.Response(
            resp.status_code,
            headers=[(k, v) for k, v in resp.headers.multi_items() if k.lower() not in skip],
            content=b"".join(chunks),
            request=httpx.Request(method, url, headers=headers),
            extensions={"http_version": resp.extensions.get("http_version", b"HTTP/1.1")},
        )

    def _too_large(self, url: httpx.URL) -> str:
        return f"the response from {url.host} is larger than {self.max_bytes} bytes"
