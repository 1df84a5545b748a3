"""Cross-tenant matrix: every route that takes an id, with tenant B's ids and tenant A's credential
(an API key, or a JWT minted from it), answers 404 and never B's data; B's data is unchanged after
(checked through B's own key). Runs on SQLite and on PostgreSQL as the non-owner role (RLS live)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from core.db import system_session, tenant_session
from tenants import service
from tenants.models import Membership, User
from tests.app.conftest import Api, valid_yaml

pytestmark = pytest.mark.usefixtures("engine")

B_MARK = "Bravo-private-text"


@dataclass
class Bravo:
    api: Api
    slug: str
    member_id: str
    owner_member_id: str
    key_id: str


def make_bravo(tenant: Callable[..., Api]) -> Bravo:
    b = tenant("Bravo")
    for n in range(3):  # versions 1 and 2 published, a third draft pending
        assert b.push(valid_yaml("bravo_flow", text=f"{B_MARK} {n}")).status_code in (200, 201)
        if n < 2:
            assert b.post("/workflows/bravo_flow/publish").status_code == 200
    for n in range(3):  # B's "shared" has versions 1..3 (A's has only 1)
        assert b.push(valid_yaml("shared", text=f"{B_MARK} shared {n}")).status_code in (200, 201)
        assert b.post("/workflows/shared/publish").status_code == 200
    assert b.call("PUT", "/secrets/SHARED_NAME", json={"value": f"{B_MARK}-secret"}).status_code == 204
    with system_session() as s:
        user = User(email="bravo-editor@example.com")
        s.add(user)
    with tenant_session(b.tenant_id) as s:
        mb = Membership(tenant_id=b.tenant_id, user_id=user.id, role="editor")
        s.add(mb)
    members = b.get("/members").json()["members"]
    owner_mid = next(m["id"] for m in members if m["role"] == "owner")
    key_id = next(k["id"] for k in b.get("/api-keys").json()["api_keys"] if b.key.startswith(k["prefix"]))
    return Bravo(b, "bravo_flow", mb.id, owner_mid, key_id)


def snapshot(b: Bravo) -> dict[str, Any]:
    """Everything of B's that A might touch, read through B's own key."""
    api = b.api

    def flow(slug: str) -> dict[str, Any]:
        got = api.get(f"/workflows/{slug}")
        assert got.status_code == 200, got.text
        body = got.json()
        return {"etag": got.headers["ETag"], "yaml": body["yaml"], "versions": body["versions"],
                "status": body["status"]}  # fmt: skip

    keys = api.get("/api-keys").json()["api_keys"]
    return {
        "flows": {s: flow(s) for s in (b.slug, "shared")},
        "list": api.get("/workflows").json(),
        "members": api.get("/members").json(),
        "keys": [(k["id"], k["revoked_at"], k["scopes"]) for k in keys],
        "secrets": service.secrets_for_runtime(api.tenant_id),
        "audit_len": len(api.get("/audit", params={"limit": 500}).json()["entries"]),
    }


def matrix(b: Bravo) -> list[tuple[str, str, dict[str, Any]]]:
    s = b.slug
    return [
        ("GET", f"/workflows/{s}", {}),
        ("DELETE", f"/workflows/{s}", {}),
        ("GET", f"/workflows/{s}/versions", {}),
        ("GET", f"/workflows/{s}/diff", {"params": {"from": 1, "to": 2}}),
        ("GET", f"/workflows/{s}/diff", {}),
        ("POST", f"/workflows/{s}/publish", {}),
        ("POST", f"/workflows/{s}/rollback", {"json": {"version": 1}}),
        ("GET", f"/workflows/{s}/export", {}),
        ("GET", f"/workflows/{s}/export", {"params": {"version": 1}}),
        # A has its own "shared" with version 1 only: B's version numbers must not resolve.
        ("GET", "/workflows/shared/export", {"params": {"version": 3}}),
        ("GET", "/workflows/shared/diff", {"params": {"from": 1, "to": 3}}),
        ("POST", "/workflows/shared/rollback", {"json": {"version": 2}}),
        ("PATCH", f"/members/{b.member_id}", {"json": {"role": "viewer"}}),
        ("PATCH", f"/members/{b.owner_member_id}", {"json": {"role": "viewer"}}),
        ("DELETE", f"/members/{b.member_id}", {}),
        ("DELETE", f"/members/{b.owner_member_id}", {}),
        ("DELETE", f"/api-keys/{b.key_id}", {}),
    ]


@pytest.mark.parametrize("credential", ["api_key", "jwt"])
def test_tenant_b_ids_with_tenant_a_credential_are_404(tenant: Callable[..., Api], credential: str) -> None:
    b = make_bravo(tenant)
    a = tenant("Alpha")
    a.push(valid_yaml("shared", text="Alpha shared"))
    a.post("/workflows/shared/publish")
    before = snapshot(b)
    key = a.key if credential == "api_key" else a.post("/auth/token").json()["access_token"]

    for method, path, kw in matrix(b):
        r = a.call(method, path, key=key, **kw)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"].endswith("not_found"), (method, path)
        assert B_MARK not in r.text and b.api.tenant_id not in r.text, (method, path)

    assert snapshot(b) == before
    assert b.api.get("/workflows").status_code == 200  # B's key was not revoked


def test_lists_and_writes_stay_inside_the_callers_tenant(tenant: Callable[..., Api]) -> None:
    b = make_bravo(tenant)
    a = tenant("Alpha")
    before = snapshot(b)

    for path in ("/workflows", "/members", "/api-keys", "/audit", "/plan"):
        r = a.get(path)
        assert r.status_code == 200, path
        assert B_MARK not in r.text and b.api.tenant_id not in r.text and b.key_id not in r.text, path
        assert "bravo-editor@example.com" not in r.text, path
    assert a.get("/workflows").json()["workflows"] == []

    # Same slug and same secret name in A make A's own rows; B's stay as they were.
    assert a.push(valid_yaml(b.slug, text="Alpha's own")).status_code == 201
    assert a.post(f"/workflows/{b.slug}/publish").json()["version"]["number"] == 1
    assert a.call("DELETE", f"/workflows/{b.slug}").status_code == 204
    assert a.call("PUT", "/secrets/SHARED_NAME", json={"value": "alpha"}).status_code == 204
    assert service.secrets_for_runtime(a.tenant_id) == {"SHARED_NAME": "alpha"}

    assert snapshot(b) == before


@pytest.mark.parametrize("field", ["tenant_id", "tenant"])
def test_tenant_in_query_header_or_body_is_ignored_or_refused(tenant: Callable[..., Api], field: str) -> None:
    b = make_bravo(tenant)
    a = tenant("Alpha")
    before = snapshot(b)
    r = a.get("/workflows", params={field: b.api.tenant_id}, headers={"X-Tenant-Id": b.api.tenant_id})
    assert r.status_code == 200 and r.json()["workflows"] == []
    r = a.get(f"/workflows/{b.slug}", params={field: b.api.tenant_id})
    assert r.status_code == 404
    r = a.post(f"/workflows/{b.slug}/rollback", json={"version": 1, field: b.api.tenant_id})
    assert r.status_code == 422  # unknown body fields are refused, not trusted
    r = a.call("PUT", "/secrets/SHARED_NAME", json={"value": "x", field: b.api.tenant_id})
    assert r.status_code == 422
    assert snapshot(b) == before
