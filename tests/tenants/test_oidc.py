"""OIDC login end to end: a Starlette app served by uvicorn on loopback (the relying party, using
tenants.oidc) against a real OIDC provider process on loopback (tests/fixtures/oidc_provider.py).
A test "browser" (httpx, cookies kept, redirects followed by hand) drives login -> the provider's
authorization form -> callback."""

# ruff: noqa: F811 - the fixtures imported below are redefined as test parameters, as pytest wants
from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from tenants.oidc import (
    DEFAULT_SCOPES,
    OIDCClaims,
    OIDCConfigError,
    make_oauth,
    oidc_config,
    oidc_enabled,
    oidc_routes,
)
from tests.fixtures.oidc_provider import ALICE, Provider, oidc_provider, oidc_provider_module  # noqa: F401

CLIENT_ID = "flowdesk-test"
CLIENT_SECRET = "test-client-secret"


def rp_settings(issuer: str, **extra: object) -> SimpleNamespace:
    values: dict[str, object] = {"OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": CLIENT_SECRET, **extra}
    return SimpleNamespace(OIDC_ISSUER=issuer, **values)


@dataclass
class RelyingParty:
    url: str
    logins: list[OIDCClaims] = field(default_factory=list)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    def stop(self) -> None:
        assert self.server and self.thread
        self.server.should_exit = True
        self.thread.join(5)


def start_rp(settings: SimpleNamespace) -> RelyingParty:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    rp = RelyingParty(url=f"http://127.0.0.1:{sock.getsockname()[1]}")

    async def on_login(claims: OIDCClaims, request: Request) -> Response:
        rp.logins.append(claims)
        return JSONResponse({"logged_in": asdict(claims)})

    app = Starlette(
        routes=[Mount("/auth/oidc", app=oidc_routes(on_login, settings=settings))],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key="test-session-secret",
                session_cookie="flowdesk_session",
                same_site="lax",
                https_only=False,
            )
        ],
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="oidc-rp")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the relying party did not start"
        time.sleep(0.01)
    rp.server, rp.thread = server, thread
    return rp


@pytest.fixture(scope="module")
def rp_module(oidc_provider_module: Provider) -> Iterator[RelyingParty]:
    rp = start_rp(rp_settings(oidc_provider_module.issuer))
    yield rp
    rp.stop()


@pytest.fixture
def rp(rp_module: RelyingParty, oidc_provider: Provider) -> RelyingParty:
    rp_module.logins.clear()
    return rp_module


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        yield client


def start_login(browser: httpx.Client, rp: RelyingParty) -> str:
    r = browser.get(f"{rp.url}/auth/oidc/login")
    assert r.status_code == 302, r.text
    return r.headers["location"]


def approve(browser: httpx.Client, authorize_url: str, sub: str = ALICE.sub) -> str:
    """What a user does on the provider's page: see the form, pick the account, submit."""
    page = browser.get(authorize_url)
    assert page.status_code == 200, page.text
    assert "Authorize" in page.text
    r = browser.post(authorize_url, data={"sub": sub})
    assert r.status_code == 302, r.text
    return r.headers["location"]


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


def test_login_end_to_end_returns_verified_claims(rp: RelyingParty, oidc_provider: Provider, browser) -> None:
    authorize_url = start_login(browser, rp)
    assert authorize_url.startswith(f"{oidc_provider.issuer}/oauth2/authorize?")
    params = query_of(authorize_url)
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == f"{rp.url}/auth/oidc/callback"
    assert params["scope"] == DEFAULT_SCOPES
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20

    callback_url = approve(browser, authorize_url)
    assert callback_url.startswith(f"{rp.url}/auth/oidc/callback?")
    assert query_of(callback_url)["state"] == params["state"]

    r = browser.get(callback_url)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "logged_in": {
            "sub": "alice-123",
            "iss": oidc_provider.issuer,
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Example",
        }
    }
    assert len(rp.logins) == 1

    # PKCE: the verifier sent to the token endpoint is the one the challenge was made from.
    token_request = oidc_provider.last("/oauth2/token")
    verifier = token_request.form["code_verifier"][0]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == params["code_challenge"]
    assert token_request.form["grant_type"] == ["authorization_code"]


def test_unverified_email_is_reported_as_unverified(rp: RelyingParty, browser) -> None:
    # The provider creates an ad-hoc user whose only claim is an email, without email_verified.
    callback_url = approve(browser, start_login(browser, rp), sub="bob@example.org")
    r = browser.get(callback_url)
    assert r.status_code == 200, r.text
    claims = r.json()["logged_in"]
    assert claims["sub"] == "bob@example.org"
    assert claims["email"] == "bob@example.org"
    assert claims["email_verified"] is False
    assert claims["name"] is None


def test_tampered_state_is_refused(rp: RelyingParty, browser) -> None:
    callback_url = approve(browser, start_login(browser, rp))
    r = browser.get(with_query(callback_url, state="x" * 30))
    assert r.status_code == 400
    assert error_code(r) == "oidc_state"
    assert rp.logins == []


def test_callback_works_once(rp: RelyingParty, browser) -> None:
    callback_url = approve(browser, start_login(browser, rp))
    assert browser.get(callback_url).status_code == 200
    replay = browser.get(callback_url)
    assert replay.status_code == 400
    assert error_code(replay) == "oidc_state"
    assert len(rp.logins) == 1


def test_callback_from_another_browser_is_refused(rp: RelyingParty, browser) -> None:
    # Login CSRF: an attacker's callback URL (code + state) pushed into a victim's browser, which
    # never started this login, must not log the victim in as the attacker.
    callback_url = approve(browser, start_login(browser, rp))
    with httpx.Client(follow_redirects=False, timeout=10) as victim:
        r = victim.get(callback_url)
    assert r.status_code == 400
    assert error_code(r) == "oidc_state"
    assert rp.logins == []


def test_wrong_nonce_is_refused(rp: RelyingParty, browser, caplog) -> None:
    # The provider signs whatever nonce it was sent; ours no longer matches the one in the session.
    authorize_url = with_query(start_login(browser, rp), nonce="attacker-chosen-nonce-0123456789")
    r = browser.get(approve(browser, authorize_url))
    assert r.status_code == 400
    assert error_code(r) == "oidc_invalid_token"
    assert "Invalid claim: 'nonce'" in caplog.text
    assert rp.logins == []


def test_id_token_from_another_issuer_is_refused(
    rp: RelyingParty, oidc_provider: Provider, browser, caplog
) -> None:
    callback_url = approve(browser, start_login(browser, rp))
    # The token endpoint now signs ID tokens with iss=http://localhost:<port> (same keys).
    oidc_provider.host_override["/oauth2/token"] = f"localhost:{oidc_provider.port}"
    r = browser.get(callback_url)
    assert r.status_code == 400
    assert error_code(r) == "oidc_invalid_token"
    assert "Invalid claim: 'iss'" in caplog.text
    assert rp.logins == []


def test_issuer_named_in_the_response_must_match(rp: RelyingParty, browser) -> None:
    callback_url = approve(browser, start_login(browser, rp))
    r = browser.get(with_query(callback_url, iss="https://evil.example"))
    assert r.status_code == 400
    assert error_code(r) == "oidc_wrong_issuer"
    assert rp.logins == []


def test_user_denying_consent_is_refused(rp: RelyingParty, browser) -> None:
    authorize_url = start_login(browser, rp)
    r = browser.post(authorize_url, data={"action": "deny"})
    assert r.status_code == 302
    callback = browser.get(r.headers["location"])
    assert callback.status_code == 400
    assert error_code(callback) == "oidc_denied"
    assert rp.logins == []


def test_discovery_document_for_another_issuer_is_refused(oidc_provider: Provider, browser) -> None:
    oidc_provider.host_override["/.well-known/openid-configuration"] = f"localhost:{oidc_provider.port}"
    fresh = start_rp(rp_settings(oidc_provider.issuer))  # its own client: no cached discovery
    try:
        r = browser.get(f"{fresh.url}/auth/oidc/login")
    finally:
        fresh.stop()
    assert r.status_code == 502
    assert error_code(r) == "oidc_misconfigured"
    assert [q.path for q in oidc_provider.requests] == ["/.well-known/openid-configuration"]


def test_unreachable_provider_gives_a_clear_error(browser) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fresh = start_rp(rp_settings(f"http://127.0.0.1:{port}", OIDC_TIMEOUT_S=2))
    try:
        r = browser.get(f"{fresh.url}/auth/oidc/login")
    finally:
        fresh.stop()
    assert r.status_code == 502
    assert error_code(r) == "oidc_unavailable"


# --- configuration (pure) -------------------------------------------------------------------------


def test_enabled_only_with_issuer_and_client_id() -> None:
    assert oidc_enabled(SimpleNamespace()) is False
    assert oidc_enabled(SimpleNamespace(OIDC_ISSUER="https://id.example.com", OIDC_CLIENT_ID="")) is False
    assert oidc_enabled(SimpleNamespace(OIDC_ISSUER="https://id.example.com", OIDC_CLIENT_ID="x")) is True
    with pytest.raises(OIDCConfigError, match="OIDC_ISSUER and OIDC_CLIENT_ID"):
        oidc_config(SimpleNamespace())


@pytest.mark.parametrize(
    ("issuer", "message"),
    [
        ("http://id.example.com", "https"),
        ("ftp://id.example.com", "https URL"),
        ("https://id.example.com?x=1", "without query"),
        ("id.example.com", "https URL"),
    ],
)
def test_bad_issuers_are_refused(issuer: str, message: str) -> None:
    with pytest.raises(OIDCConfigError, match=message):
        oidc_config(rp_settings(issuer))


def test_scopes_must_include_openid() -> None:
    with pytest.raises(OIDCConfigError, match="openid"):
        oidc_config(rp_settings("https://id.example.com", OIDC_SCOPES="email profile"))


def test_discovery_url_and_public_client() -> None:
    config = oidc_config(rp_settings("https://id.example.com/realms/acme/", OIDC_CLIENT_SECRET=""))
    assert config.discovery_url == "https://id.example.com/realms/acme/.well-known/openid-configuration"
    assert config.client_secret is None
    assert CLIENT_SECRET not in repr(oidc_config(rp_settings("https://id.example.com")))
    client = make_oauth(rp_settings("https://id.example.com", OIDC_CLIENT_SECRET="")).create_client("oidc")
    assert client.client_kwargs["token_endpoint_auth_method"] == "none"
    assert client.client_kwargs["code_challenge_method"] == "S256"
