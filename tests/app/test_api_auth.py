"""Credentials, scopes, rate limits and the error contract of every /api/v1 route."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import redis
from sqlalchemy import update

from app import api_deps
from core.db import tenant_session
from tenants import plans, tokens
from tenants.models import ApiKey
from tenants.ratelimit import RateLimiter
from tests.app.conftest import Api, valid_yaml
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.usefixtures("engine")

#: (method, path, json body) for every authenticated route; ids need not exist (auth runs first).
ROUTES = [
    ("POST", "/auth/token", None),
    ("GET", "/workflows", None),
    ("GET", "/workflows/x", None),
    ("DELETE", "/workflows/x", None),
    ("GET", "/workflows/x/versions", None),
    ("GET", "/workflows/x/diff", None),
    ("POST", "/workflows/x/publish", None),
    ("POST", "/workflows/x/rollback", {"version": 1}),
    ("GET", "/workflows/x/export", None),
    ("GET", "/members", None),
    ("POST", "/members", {"email": "a@b.example", "role": "viewer"}),
    ("PATCH", "/members/x", {"role": "viewer"}),
    ("DELETE", "/members/x", None),
    ("GET", "/api-keys", None),
    ("POST", "/api-keys", {"name": "k", "scopes": ["chat"]}),
    ("DELETE", "/api-keys/x", None),
    ("GET", "/audit", None),
    ("PUT", "/secrets/NAME", {"value": "v"}),
    ("GET", "/plan", None),
]


def _jwt_with(claims: dict[str, object], header: dict[str, object]) -> str:
    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}."


def bad_credentials(a: Api) -> dict[str, dict[str, str]]:
    past = datetime.now(UTC) - timedelta(hours=2)
    good_jwt = a.post("/auth/token").json()["access_token"]
    head, payload, sig = good_jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload = base64.urlsafe_b64encode(json.dumps({**claims, "tid": "someone-else"}).encode())
    other_secret = SimpleNamespace(SECRET_KEY="not-our-secret")
    return {
        "missing": {},
        "empty_bearer": {"Authorization": "Bearer "},
        "basic_scheme": {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()},
        "unknown_key": {"Authorization": "Bearer fd_live_" + "A" * 32},
        "garbage": {"Authorization": "Bearer ' OR 1=1 --"},
        "expired_jwt": {
            "Authorization": "Bearer "
            + tokens.mint_access_token("apikey:x", a.tenant_id, ["admin"], now=past)
        },
        "tampered_jwt": {"Authorization": f"Bearer {head}.{forged_payload.rstrip(b'=').decode()}.{sig}"},
        "bad_signature": {"Authorization": f"Bearer {head}.{payload}.{sig[::-1]}"},
        "other_key_jwt": {
            "Authorization": "Bearer "
            + tokens.mint_access_token("apikey:x", a.tenant_id, ["admin"], settings=other_secret)
        },
        "alg_none": {"Authorization": "Bearer " + _jwt_with(claims, {"alg": "none", "typ": "at+jwt"})},
    }


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_refuses_bad_credentials_with_401(
    tenant: Callable[..., Api], method: str, path: str, body: object
) -> None:
    a = tenant()
    for name, headers in bad_credentials(a).items():
        r = a.client.request(method, "/api/v1" + path, headers=headers, json=body)
        assert r.status_code == 401, (name, r.text)
        err = r.json()["error"]
        assert err["code"] and err["message"], name
    # Nothing was written by any of them (the owner's audit has only tenant.create + api_key.create).
    actions = {e["action"] for e in a.get("/audit").json()["entries"]}
    assert actions == {"tenant.create", "api_key.create"}


def test_revoked_and_expired_keys_are_401(tenant: Callable[..., Api], engine: object) -> None:
    a = tenant()
    spare = a.key_with("workflows:read")
    keys = a.get("/api-keys").json()["api_keys"]
    spare_id = next(k["id"] for k in keys if spare.startswith(k["prefix"]) and k["name"] == "scoped")
    assert a.get("/workflows", key=spare).status_code == 200
    assert a.call("DELETE", f"/api-keys/{spare_id}").status_code == 204
    r = a.get("/workflows", key=spare)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"

    other = a.key_with("workflows:read")
    with tenant_session(a.tenant_id) as s:
        s.exec(  # type: ignore[call-overload]
            update(ApiKey)
            .where(ApiKey.key_hash == tokens.hash_key(other))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert a.get("/workflows", key=other).status_code == 401


def test_token_exchange_and_jwt_use(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    r = a.post("/auth/token")
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600
    jwt = body["access_token"]
    assert [w["id"] for w in a.get("/workflows", key=jwt).json()["workflows"]] == ["hello"]
    # A token cannot be exchanged for another token.
    again = a.post("/auth/token", key=jwt)
    assert again.status_code == 401 and again.json()["error"]["code"] == "api_key_required"
    # The JWT keeps the key's scopes, no more.
    read_only = a.post("/auth/token", key=a.key_with("workflows:read")).json()["access_token"]
    assert a.get("/workflows", key=read_only).status_code == 200
    assert a.post("/workflows/hello/publish", key=read_only).status_code == 403


SCOPE_CASES = [
    # (scopes of the key, method, path, json)
    (["workflows:read"], "POST", "/workflows/hello/publish", None),
    (["workflows:read"], "DELETE", "/workflows/hello", None),
    (["workflows:read"], "POST", "/workflows/hello/rollback", {"version": 1}),
    (["workflows:write"], "GET", "/workflows", None),
    (["chat"], "GET", "/workflows/hello", None),
    (["chat"], "GET", "/members", None),
    (["chat"], "POST", "/members", {"email": "x@y.example", "role": "viewer"}),
    (["workflows:write"], "GET", "/api-keys", None),
    (["workflows:read", "workflows:write", "chat"], "POST", "/api-keys", {"name": "n", "scopes": ["admin"]}),
    (["workflows:write"], "GET", "/audit", None),
    (["workflows:write"], "PUT", "/secrets/TOKEN", {"value": "s3cret"}),
]


@pytest.mark.parametrize(("scopes", "method", "path", "body"), SCOPE_CASES)
def test_insufficient_scope_is_403_and_changes_nothing(
    tenant: Callable[..., Api], scopes: list[str], method: str, path: str, body: object
) -> None:
    a = tenant()
    a.push(valid_yaml())
    a.post("/workflows/hello/publish")
    before = a.get("/audit").json()["entries"]
    key = a.key_with(*scopes)
    r = a.call(method, path, key=key, json=body)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "insufficient_scope"
    after = a.get("/audit").json()["entries"]
    assert len(after) == len(before) + 1  # only the key's own creation
    assert a.get("/workflows/hello/versions").json()["published_version"] == 1


def test_read_key_can_read_and_plan_needs_no_special_scope(tenant: Callable[..., Api]) -> None:
    a = tenant()
    a.push(valid_yaml())
    key = a.key_with("workflows:read")
    for path in ("/workflows", "/workflows/hello", "/workflows/hello/versions", "/workflows/hello/export"):
        assert a.get(path, key=key).status_code == 200, path
    assert a.get("/plan", key=a.key_with("chat")).status_code == 200


def test_unknown_routes_are_json_404_and_secret_get_is_405(tenant: Callable[..., Api]) -> None:
    a = tenant()
    for method, path in [("GET", "/nope"), ("POST", "/workflows/x/y/z"), ("GET", "/")]:
        r = a.call(method, path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    r = a.get("/secrets/LLM_KEY")
    assert r.status_code == 405
    assert r.headers["Allow"] == "PUT"
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert a.client.get("/api/v1/health").json()["ok"] is True


def test_malformed_json_and_wrong_types_are_422(tenant: Callable[..., Api]) -> None:
    a = tenant()
    headers = {"Content-Type": "application/json"}
    r = a.call("POST", "/api-keys", content=b'{"name": "x", "scopes": [', headers=headers)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_json"
    for bad in (
        {"name": 5, "scopes": ["chat"]},
        {"name": ["SENTINEL-VALUE"], "scopes": ["chat"]},
        {"name": "x", "scopes": "chat"},
        {"name": "x", "scopes": [1]},
        {"name": "x"},
        {"name": "x", "scopes": ["chat"], "tenant_id": "other"},
        "just a string",
    ):
        r = a.post("/api-keys", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_request"
        assert "SENTINEL-VALUE" not in r.text  # the input is never echoed back
    assert len(a.get("/api-keys").json()["api_keys"]) == 1


def test_json_body_over_64k_is_413(tenant: Callable[..., Api]) -> None:
    a = tenant()
    r = a.call("PUT", "/secrets/BIG", json={"value": "x" * (65 * 1024)})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
    r = a.call("PUT", "/secrets/BIG", content=b"{}", headers={"Content-Length": "abc"})
    assert r.status_code in (400, 413)


# ---------------------------------------------------------------- rate limits


@pytest.fixture
def small_plan(monkeypatch: pytest.MonkeyPatch) -> plans.Plan:
    plan = dataclasses.replace(plans.BUSINESS, requests_per_minute=5, requests_per_minute_per_key=3)
    monkeypatch.setattr(api_deps, "plan_of", lambda _p: plan)
    return plan


def _exercise_limits(a: Api, second_key: str) -> None:
    remaining = []
    for _ in range(3):
        r = a.get("/plan")
        assert r.status_code == 200
        assert r.headers["RateLimit-Limit"] == "3"
        remaining.append(int(r.headers["RateLimit-Remaining"]))
        assert 0 < int(r.headers["RateLimit-Reset"]) <= 60
    assert remaining == [2, 1, 0]
    denied = a.get("/workflows")
    assert denied.status_code == 429
    assert denied.json()["error"]["code"] == "rate_limited"
    assert denied.headers["RateLimit-Remaining"] == "0"
    retry = int(denied.headers["Retry-After"])
    assert 1 <= retry <= 60 and denied.headers["RateLimit-Reset"] == str(retry)
    # A JWT minted for the key spends the key's budget (the exchange itself is limited, too).
    assert a.post("/auth/token").status_code == 429
    # Another key of the tenant has its own per-key budget, until the tenant's 5 are used.
    assert a.get("/plan", key=second_key).status_code == 200
    assert a.get("/plan", key=second_key).status_code == 200
    third = a.get("/plan", key=second_key)
    assert third.status_code == 429 and third.headers["RateLimit-Limit"] == "5"


def test_rate_limit_per_key_and_tenant_in_memory(tenant: Callable[..., Api], small_plan: plans.Plan) -> None:
    a = tenant()
    second = _second_key(a)
    _exercise_limits(a, second)


def _second_key(a: Api) -> str:
    # Made through the service so the setup itself does not spend the API budget.
    from tenants import roles, service
    from tenants.principal import Principal

    owner = Principal(
        a.tenant_id, "user", a.owner_id, roles.ROLE_SCOPES["owner"], role="owner", user_id=a.owner_id
    )
    return service.create_api_key(owner, "second", ["admin"])[1]


@pytest.fixture
def redis_limiter(monkeypatch: pytest.MonkeyPatch) -> Iterator[RateLimiter]:
    prefix = f"fdtest:api:{uuid.uuid4().hex}"
    limiter = RateLimiter(REDIS_URL, key_prefix=prefix)
    monkeypatch.setattr(api_deps, "limiter", lambda: limiter)
    yield limiter
    limiter.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.mark.redis
def test_rate_limit_against_real_redis(
    tenant: Callable[..., Api], small_plan: plans.Plan, redis_limiter: RateLimiter
) -> None:
    assert redis_limiter.backend == "redis"
    a = tenant()
    _exercise_limits(a, _second_key(a))


def test_rate_limiter_down_is_503(tenant: Callable[..., Api], monkeypatch: pytest.MonkeyPatch) -> None:
    a = tenant()
    dead = RateLimiter("redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setattr(api_deps, "limiter", lambda: dead)
    r = a.get("/workflows")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "rate_limiter_unavailable"
