"""Single sign-on end to end: the real OIDC provider process, our /auth/oidc routes served over HTTP,
and the tenants service creating or linking the account on SQLite and PostgreSQL."""

# ruff: noqa: F811 - fixtures imported below are redefined as test parameters, as pytest wants
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.api import mount_oidc
from app.state import SESSION_COOKIE
from core.settings import get_settings
from tenants import service
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.fixtures.oidc_provider import ALICE, Provider, oidc_provider, oidc_provider_module  # noqa: F401


@pytest.fixture
def services_db(db_engine, monkeypatch):
    monkeypatch.setattr("core.db._engine", db_engine)
    return db_engine


@pytest.fixture
def sso_app(oidc_provider: Provider) -> Iterator[str]:
    base = get_settings()
    settings = SimpleNamespace(
        OIDC_ISSUER=oidc_provider.issuer,
        OIDC_CLIENT_ID="flowdesk-test",
        OIDC_CLIENT_SECRET="secret",
        OIDC_SCOPES="openid email profile",
        OIDC_REDIRECT_URI=None,
        OIDC_TIMEOUT_S=10.0,
        SECRET_KEY=base.SECRET_KEY,
        PUBLIC_URL="http://localhost:3000",
    )
    app = FastAPI()
    assert mount_oidc(app, settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)


def sign_in(app_url: str) -> httpx.Response:
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        authorize = browser.get(f"{app_url}/auth/oidc/login").headers["location"]
        assert browser.get(authorize).status_code == 200  # the provider's consent page
        callback = browser.post(authorize, data={"sub": ALICE.sub}).headers["location"]
        return browser.get(callback)


def test_first_sso_login_creates_the_account_and_a_team(services_db, sso_app):
    r = sign_in(sso_app)
    assert r.status_code == 303 and r.headers["location"].endswith("/workflows")
    token = r.cookies[SESSION_COOKIE]
    p = service.principal_for_session(token)
    assert p.role == "owner"
    assert [m["email"] for m in service.list_members(p)] == ["alice@example.com"]
    # The second sign-in finds the same account and team by (issuer, subject).
    again = service.principal_for_session(sign_in(sso_app).cookies[SESSION_COOKIE])
    assert (again.user_id, again.tenant_id) == (p.user_id, p.tenant_id)


def test_sso_links_an_existing_password_account_by_verified_email(services_db, sso_app):
    tenant, user = service.create_tenant("Alice Co", "alice@example.com", password="correct horse battery")
    p = service.principal_for_session(sign_in(sso_app).cookies[SESSION_COOKIE])
    assert (p.user_id, p.tenant_id) == (user.id, tenant.id)


def test_unverified_email_does_not_link_or_create(services_db):
    with pytest.raises(Exception, match="confirm your email"):
        service.login_oidc(iss="https://idp.example", sub="x", email="bob@example.com", email_verified=False)
    service.create_tenant("Bob Co", "bob@example.com", password="correct horse battery")
    # A provider that does not vouch for the email cannot take over the password account.
    with pytest.raises(Exception, match="confirm your email"):
        service.login_oidc(iss="https://idp.example", sub="x", email="bob@example.com", email_verified=False)
