"""The API under test: ``TestClient(api)`` on a migrated SQLite or PostgreSQL (app role: RLS live).

``tenant(...)`` makes a tenant through ``tenants.service.create_tenant`` and an admin API key
through ``create_api_key`` (as its owner); ``Api`` wraps a client with that key. Every test gets
its own in-memory rate limiter, so counters never leak between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from app import api_deps
from app.api import api
from tenants import roles, service
from tenants.principal import Principal
from tenants.ratelimit import RateLimiter
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401

V1 = "/api/v1"

VALID = """\
version: 1
id: {id}
name: {name}
nodes:
  - id: start
    type: start
  - id: hi
    type: reply
    config:
      text: {text}
edges:
  - {{from: start, to: hi}}
"""

# Parses, but the edge names a node that does not exist: saved with error issues, not publishable.
BROKEN_GRAPH = """\
version: 1
id: {id}
name: Broken
nodes:
  - id: start
    type: start
  - id: hi
    type: reply
    config:
      text: Hi
edges:
  - {{from: start, to: nowhere}}
"""


def valid_yaml(slug: str = "hello", *, name: str = "Hello", text: str = "Hi") -> str:
    return VALID.format(id=slug, name=name, text=text)


@dataclass
class Api:
    """A client speaking for one tenant with one credential."""

    client: TestClient
    tenant_id: str
    owner_id: str
    key: str

    def call(self, method: str, path: str, *, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key if key is None else key}", **kw.pop("headers", {})}
        return self.client.request(method, V1 + path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("POST", path, **kw)

    def push(self, text: str, **kw: Any) -> httpx.Response:
        headers = {"Content-Type": "application/yaml", **kw.pop("headers", {})}
        return self.call("POST", "/workflows", content=text.encode(), headers=headers, **kw)

    def key_with(self, *scopes: str) -> str:
        r = self.post("/api-keys", json={"name": "scoped", "scopes": list(scopes)})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


@pytest.fixture
def engine(db_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:  # noqa: F811
    monkeypatch.setattr("core.db._engine", db_engine)
    return db_engine


@pytest.fixture
def memory_limiter(monkeypatch: pytest.MonkeyPatch) -> RateLimiter:
    limiter = RateLimiter(None)
    monkeypatch.setattr(api_deps, "limiter", lambda: limiter)
    return limiter


@pytest.fixture
def client(engine: Engine, memory_limiter: RateLimiter) -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def tenant(client: TestClient) -> Callable[..., Api]:
    def make(name: str = "Acme", *, plan: str = "business") -> Api:
        t, owner = service.create_tenant(name, f"owner-{uuid.uuid4().hex[:8]}@example.com", plan=plan)
        p = Principal(t.id, "user", owner.id, roles.ROLE_SCOPES["owner"], role="owner", user_id=owner.id)
        _key, plaintext = service.create_api_key(p, "admin", ["admin"])
        return Api(client, t.id, owner.id, plaintext)

    return make
