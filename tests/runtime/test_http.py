"""GuardedClient against real HTTP servers on 127.0.0.1: the SSRF guard, pinning, manual
redirects, the size cap and retries."""

from __future__ import annotations

import gzip
import ipaddress
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.settings import Settings
from runtime.http import BlockedURL, GuardedClient, ResponseTooLarge, blocked_reason, origin_of


class Recorder(BaseHTTPRequestHandler):
    hits: Counter
    seen: list

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, length: bool = True):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def _handle(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        server = self.server
        server.hits[url.path] += 1
        body_in = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server.seen.append({"path": url.path, "method": self.command, "headers": dict(self.headers)})
        if url.path == "/ok":
            info = {
                "method": self.command,
                "host": self.headers.get("Host"),
                "query": q,
                "body": body_in.decode(),
            }
            self._reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        elif url.path == "/redirect":
            self._reply(int(q.get("code", 302)), headers={"Location": q["to"]})
        elif url.path.startswith("/chain/"):
            n = int(url.path.rsplit("/", 1)[1])
            self._reply(302, headers={"Location": f"/chain/{n - 1}" if n > 1 else "/ok"})
        elif url.path == "/big":
            self._reply(200, b"x" * int(q["n"]))
        elif url.path == "/stream":  # no Content-Length: the body ends when the connection closes
            self.close_connection = True
            self._reply(200, b"y" * int(q["n"]), length=False)
        elif url.path == "/gzip":
            self._reply(200, gzip.compress(b"\0" * int(q["n"])), {"Content-Encoding": "gzip"})
        elif url.path == "/flaky":
            ok = server.hits[url.path] > int(q.get("fail", 2))
            self._reply(
                200 if ok else int(q.get("status", 503)), b'{"ok": %s}' % (b"true" if ok else b"false")
            )
        else:
            self._reply(404, b"nope")


def start_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.hits = Counter()
    srv.seen = []
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


@pytest.fixture
def server():
    srv, url = start_server()
    yield srv, url
    srv.shutdown()


def client(*origins: str, **settings) -> GuardedClient:
    return GuardedClient(Settings(**settings), allow_origins=list(origins))


# --- the address rules (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    "addr, reason",
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4 of loopback
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 of the metadata address
    ],
)
def test_blocked_addresses(addr, reason):
    got = blocked_reason(ipaddress.ip_address(addr))
    assert got is not None and reason in got


@pytest.mark.parametrize("addr", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(addr):
    assert blocked_reason(ipaddress.ip_address(addr)) is None


def test_origin_normalisation():
    assert origin_of("HTTP://LocalHost/x?y") == "http://localhost:80"
    assert origin_of("https://example.com:443/") == "https://example.com:443"
    assert origin_of("http://[::1]:8080/") == "http://[::1]:8080"


# --- the guard against a real server ------------------------------------------------------


def test_allowed_origin_reaches_a_real_server(server):
    _srv, url = server
    with client(url) as c:
        r = c.request("POST", f"{url}/ok", params={"a": "1"}, json={"x": 2}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["method"] == "POST" and body["query"] == {"a": "1"} and json.loads(body["body"]) == {"x": 2}
    assert str(r.request.url).startswith(url)  # callers see the URL they asked for, not the pinned one


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/ok",
        "http://localhost:{port}/ok",
        "http://2130706433:{port}/ok",  # decimal 127.0.0.1
        "http://0x7f.1:{port}/ok",  # hex + short form
        "http://0177.0.0.1:{port}/ok",  # octal
        "http://127.1:{port}/ok",
        "http://[::ffff:127.0.0.1]:{port}/ok",
        "http://[::1]:{port}/ok",
        "http://0.0.0.0:{port}/ok",
    ],
)
def test_loopback_in_any_spelling_is_refused_and_never_contacted(server, template):
    srv, _url = server
    port = srv.server_address[1]
    with client() as c, pytest.raises(BlockedURL, match="refusing"):
        c.request("GET", template.format(port=port), timeout=2)
    assert srv.hits["/ok"] == 0


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
    ],
)
def test_private_and_metadata_are_refused(target):
    with client() as c, pytest.raises(BlockedURL):
        c.request("GET", target, timeout=1)


def test_metadata_is_refused_even_when_allow_listed():
    with client("http://169.254.169.254") as c, pytest.raises(BlockedURL, match="metadata"):
        c.request("GET", "http://169.254.169.254/latest/meta-data/", timeout=1)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://example.com/f"])
def test_non_http_schemes_are_refused(target):
    with client() as c, pytest.raises(BlockedURL, match="only http and https"):
        c.request("GET", target, timeout=1)


def test_a_timeout_is_required(server):
    _, url = server
    with client(url) as c, pytest.raises(ValueError, match="timeout"):
        c.request("GET", f"{url}/ok", timeout=0)


def test_allow_listed_name_keeps_its_host_header_while_connecting_to_the_checked_address(server):
    srv, _url = server
    port = srv.server_address[1]
    with client(f"http://localhost:{port}") as c:
        r = c.request("GET", f"http://localhost:{port}/ok", timeout=5)
    assert r.json()["host"] == f"localhost:{port}"


def test_the_connection_goes_to_the_address_that_was_checked(server, monkeypatch):
    """DNS rebinding: the name resolves to the allowed address when checked and elsewhere later.
    The request must still reach the checked address (httpx never resolves the name itself)."""
    srv, _ = server
    port = srv.server_address[1]
    real = socket.getaddrinfo
    calls = Counter()

    def rebinding(host, *args, **kw):
        if host == "rebind.flowdesk.test":
            calls[host] += 1
            ip = "127.0.0.1" if calls[host] == 1 else "10.255.255.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with client(f"http://rebind.flowdesk.test:{port}") as c:
        r = c.request("GET", f"http://rebind.flowdesk.test:{port}/ok", timeout=3)
    assert r.status_code == 200 and r.json()["host"] == f"rebind.flowdesk.test:{port}"
    assert calls["rebind.flowdesk.test"] == 1


# --- redirects ----------------------------------------------------------------------------


def test_redirect_chain_within_allowed_origin_is_followed(server):
    srv, url = server
    with client(url) as c:
        r = c.request("GET", f"{url}/chain/3", timeout=5)
    assert r.status_code == 200 and srv.hits["/ok"] == 1


def test_more_than_three_redirects_are_refused(server):
    srv, url = server
    with client(url) as c, pytest.raises(httpx.TooManyRedirects):
        c.request("GET", f"{url}/chain/4", timeout=5)
    assert srv.hits["/ok"] == 0


def test_redirect_from_allowed_to_blocked_origin_is_refused(server):
    srv, url = server
    port = srv.server_address[1]
    blocked = f"http://localhost:{port}/ok"  # same machine, but not an allow-listed origin
    with client(url) as c, pytest.raises(BlockedURL):
        c.request("GET", f"{url}/redirect?to={blocked}", timeout=5)
    assert srv.hits["/redirect"] == 1 and srv.hits["/ok"] == 0


def test_redirect_to_metadata_is_refused(server):
    _srv, url = server
    with client(url) as c, pytest.raises(BlockedURL, match="metadata"):
        c.request("GET", f"{url}/redirect?to=http://169.254.169.254/latest/", timeout=5)


def test_303_turns_a_post_into_a_get_and_drops_the_body(server):
    _srv, url = server
    with client(url) as c:
        r = c.request("POST", f"{url}/redirect?code=303&to=/ok", json={"a": 1}, timeout=5)
    assert r.json()["method"] == "GET" and r.json()["body"] == ""


def test_307_keeps_method_and_body(server):
    _srv, url = server
    with client(url) as c:
        r = c.request("POST", f"{url}/redirect?code=307&to=/ok", json={"a": 1}, timeout=5)
    assert r.json()["method"] == "POST" and json.loads(r.json()["body"]) == {"a": 1}


def test_headers_are_dropped_when_a_redirect_changes_origin(server):
    srv_a, url_a = server
    srv_b, url_b = start_server()
    try:
        with client(url_a, url_b) as c:
            c.request(
                "GET",
                f"{url_a}/redirect?to={url_b}/ok",
                headers={"Authorization": "Bearer s3cret"},
                timeout=5,
            )
        first = srv_a.seen[0]["headers"]
        second = srv_b.seen[0]["headers"]
        assert first.get("Authorization") == "Bearer s3cret"
        assert "Authorization" not in second
    finally:
        srv_b.shutdown()


# --- size cap -----------------------------------------------------------------------------


def test_body_within_cap_is_returned(server):
    _, url = server
    with client(url, HTTP_MAX_RESPONSE_BYTES=1000) as c:
        assert len(c.request("GET", f"{url}/big?n=1000", timeout=5).content) == 1000


@pytest.mark.parametrize("path", ["/big?n=5000", "/stream?n=5000", "/gzip?n=50000"])
def test_oversize_body_is_refused(server, path):
    _, url = server
    with client(url, HTTP_MAX_RESPONSE_BYTES=1000) as c, pytest.raises(ResponseTooLarge):
        c.request("GET", f"{url}{path}", timeout=5)


def test_gzip_body_is_decoded(server):
    _, url = server
    with client(url) as c:
        r = c.request("GET", f"{url}/gzip?n=300", timeout=5)
    assert r.content == b"\0" * 300 and "content-encoding" not in r.headers


# --- retries ------------------------------------------------------------------------------


def test_retries_on_503_until_success(server):
    _srv, url = server
    attempts = []
    with client(url) as c:
        r = c.request_retrying(
            "GET", f"{url}/flaky?fail=2", retries=3, on_attempt=lambda *a: attempts.append(a[:2])
        )
    assert r.status_code == 200
    assert [(n, s) for n, s in attempts] == [(1, 503), (2, 503), (3, 200)]


def test_retries_give_back_the_last_error_response(server):
    srv, url = server
    with client(url) as c:
        r = c.request_retrying("GET", f"{url}/flaky?fail=9&status=429", retries=1)
    assert r.status_code == 429 and srv.hits["/flaky"] == 2


def test_4xx_is_not_retried(server):
    srv, url = server
    with client(url) as c:
        r = c.request_retrying("GET", f"{url}/missing", retries=3)
    assert r.status_code == 404 and srv.hits["/missing"] == 1


def test_status_listed_as_success_is_not_retried(server):
    srv, url = server
    with client(url) as c:
        r = c.request_retrying("GET", f"{url}/flaky?fail=9", retries=3, success={503})
    assert r.status_code == 503 and srv.hits["/flaky"] == 1


def test_connect_errors_are_retried_then_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    attempts = []
    with client(f"http://127.0.0.1:{port}") as c, pytest.raises(httpx.ConnectError):
        c.request_retrying(
            "GET", f"http://127.0.0.1:{port}/", retries=2, on_attempt=lambda *a: attempts.append(a)
        )
    assert [a[0] for a in attempts] == [1, 2, 3] and all(a[3] == "ConnectError" for a in attempts)


def test_blocked_urls_are_not_retried():
    attempts = []
    with client() as c, pytest.raises(BlockedURL):
        c.request_retrying("GET", "http://127.0.0.1:9/", retries=3, on_attempt=lambda *a: attempts.append(a))
    assert len(attempts) == 1


# --- TLS: pinned to the IP, verified against the name -------------------------------------


def _tls_server(tmp_path, name: str):
    """An HTTPS server on 127.0.0.1 whose certificate (from a throwaway CA) is for ``name``."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flowdesk test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.hits, srv.seen = Counter(), []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    srv.socket = server_ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    client_ctx = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return srv, client_ctx


def test_https_is_pinned_to_the_ip_and_verified_against_the_host_name(tmp_path):
    srv, trust = _tls_server(tmp_path, "localhost")
    port = srv.server_address[1]
    try:
        with GuardedClient(Settings(), allow_origins=[f"https://localhost:{port}"], verify=trust) as c:
            r = c.request("GET", f"https://localhost:{port}/ok", timeout=5)
        assert r.status_code == 200 and r.json()["host"] == f"localhost:{port}"
    finally:
        srv.shutdown()


def test_https_certificate_for_another_name_is_refused(tmp_path):
    srv, trust = _tls_server(tmp_path, "other.flowdesk.test")
    port = srv.server_address[1]
    try:
        with GuardedClient(Settings(), allow_origins=[f"https://localhost:{port}"], verify=trust) as c:
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
                c.request("GET", f"https://localhost:{port}/ok", timeout=5)
        assert srv.hits["/ok"] == 0
    finally:
        srv.shutdown()


# --- the per-host circuit breaker (runtime/breakers.py, kind "http") -----------------------------


def test_5xx_answers_open_the_hosts_circuit_and_later_requests_fail_fast(server):
    from runtime.breakers import breaker_for
    from runtime.http import HostUnavailable

    srv, url = server
    s = {"HTTP_BREAKER_FAILS": 3, "HTTP_BREAKER_RESET_S": 60}
    with client(url, **s) as c:
        r = c.request_retrying("GET", f"{url}/flaky?fail=99", retries=2)
        assert r.status_code == 503 and srv.hits["/flaky"] == 3  # three failures: the circuit opens
        with pytest.raises(HostUnavailable, match=r"circuit is open after 3 consecutive failures"):
            c.request_retrying("GET", f"{url}/ok", retries=2)
    assert srv.hits["/ok"] == 0  # nothing was sent, and the open circuit was not retried
    assert breaker_for("http", origin_of(url)).current_state == "open"
    # Another client (another node, another worker) sees the same circuit.
    with client(url, **s) as other, pytest.raises(HostUnavailable):
        other.request("GET", f"{url}/ok")


def test_connect_errors_count_against_the_host():
    from runtime.http import HostUnavailable

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    with client(origin, HTTP_BREAKER_FAILS=2) as c:
        with pytest.raises(httpx.ConnectError):
            c.request_retrying("GET", f"{origin}/", retries=1)
        attempts = []
        with pytest.raises(HostUnavailable):
            c.request_retrying("GET", f"{origin}/", retries=3, on_attempt=lambda *a: attempts.append(a))
    assert [(a[0], a[3]) for a in attempts] == [(1, "HostUnavailable")]


def test_4xx_and_successes_keep_the_circuit_closed(server):
    from runtime.breakers import breaker_for

    _srv, url = server
    with client(url, HTTP_BREAKER_FAILS=2) as c:
        for _ in range(3):
            assert c.request("GET", f"{url}/missing").status_code == 404
        assert c.request("GET", f"{url}/flaky?fail=1").status_code == 503  # one failure ...
        assert c.request("GET", f"{url}/flaky?fail=1").status_code == 200  # ... reset by a success
        assert c.request("GET", f"{url}/ok").status_code == 200
    assert breaker_for("http", origin_of(url)).current_state == "closed"
    assert breaker_for("http", origin_of(url)).fail_counter == 0


def test_blocked_urls_never_touch_a_breaker():
    from runtime.breakers import state_of

    with client() as c, pytest.raises(BlockedURL):
        c.request("GET", "http://127.0.0.1:9/")
    assert state_of("http", "http://127.0.0.1:9") is None
