"""Plain HTTP API (``/api/v1/*``), served by the same process and port as the UI.

Reflex mounts itself under this FastAPI app (``rx.App(api_transformer=api)``).
Swagger UI is off: it loads its JS from a CDN, which offline machines cannot reach.

Routes are thin: authenticate + rate-limit + scope (``app.api_deps.require``), then one service
call. The tenant is always the principal's; no route reads a tenant id from the request.
Errors are ``{"error": {"code", "message", ...}}`` (``core.errors.ServiceError.body``).
"""

from __future__ import annotations

import dataclasses
from importlib import metadata
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app import api_deps
from app.api_chat import router as chat_router
from app.api_deps import require
from builder import models as bm
from builder import service as wfs
from core.db import tenant_session
from core.errors import Invalid, NotFound, ServiceError
from tenants import limits, service
from tenants.models import ApiKey, Membership
from tenants.principal import Principal
from tenants.tokens import ADMIN, WORKFLOWS_READ, WORKFLOWS_WRITE

api = FastAPI(title="flowdesk API", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
api.add_middleware(api_deps.ApiGuard)
api.add_exception_handler(ServiceError, api_deps.service_error_handler)
api.add_exception_handler(RequestValidationError, api_deps.validation_error_handler)
api.add_exception_handler(StarletteHTTPException, api_deps.http_error_handler)

V1 = api_deps.PREFIX
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})

Reader = Annotated[Principal, Depends(require(WORKFLOWS_READ))]
Writer = Annotated[Principal, Depends(require(WORKFLOWS_WRITE))]
Admin = Annotated[Principal, Depends(require(ADMIN))]
Anyone = Annotated[Principal, Depends(require(None))]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=200)]


def _version() -> str:
    try:
        return metadata.version("flowdesk")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


@api.get(f"{V1}/health")
async def health() -> dict[str, object]:
    """Liveness: the web process is up and serving requests."""
    return {"ok": True, "service": "flowdesk", "version": _version()}


class Body(BaseModel):
    # Unknown fields are refused: a typo (or a smuggled tenant_id) is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class RollbackIn(Body):
    version: StrictInt = Field(ge=1)


class InviteIn(Body):
    email: StrictStr = Field(max_length=320)
    role: StrictStr = Field(max_length=20)


class RoleIn(Body):
    role: StrictStr = Field(max_length=20)


class ApiKeyIn(Body):
    name: StrictStr = Field(max_length=100)
    scopes: list[StrictStr] = Field(max_length=10)


class SecretIn(Body):
    value: StrictStr


def _etag(value: str) -> dict[str, str]:
    return {"ETag": f'"{value}"'}


def _version_out(v: bm.WorkflowVersion) -> dict[str, Any]:
    return {
        "number": v.number,
        "content_hash": v.content_hash,
        "author": v.author,
        "created_at": v.created_at.isoformat() if v.created_at else None,
        "published_at": v.published_at.isoformat() if v.published_at else None,
        "published_by": v.published_by,
    }


def _key_out(k: ApiKey) -> dict[str, Any]:
    def iso(d: Any) -> str | None:
        return d.isoformat() if d else None

    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": list(k.scopes),
        "created_at": iso(k.created_at),
        "last_used_at": iso(k.last_used_at),
        "expires_at": iso(k.expires_at),
        "revoked_at": iso(k.revoked_at),
    }


def _member_out(mb: Membership) -> dict[str, Any]:
    return {"id": mb.id, "user_id": mb.user_id, "role": mb.role}


# ---------------------------------------------------------------- auth


@api.post(f"{V1}/auth/token")
def auth_token(request: Request, p: Anyone) -> dict[str, Any]:
    """An API key in ``Authorization: Bearer`` -> a short-lived JWT with the same tenant and scopes."""
    return service.exchange_api_key(api_deps.bearer(request), ip=p.ip)


# ---------------------------------------------------------------- workflows


@api.get(f"{V1}/workflows")
def list_workflows(p: Reader) -> dict[str, Any]:
    with tenant_session(p.tenant_id) as s:
        return {"workflows": [wfs.summary(r) for r in wfs.list_all(s, tenant_id=p.tenant_id)]}


@api.post(f"{V1}/workflows")
async def save_workflow(request: Request, p: Writer, if_match: IfMatch = None) -> JSONResponse:
    """The YAML file is the body; creates (201) or updates (200) the draft named by its ``id``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise ServiceError(
            "unsupported_media_type", "send the workflow as Content-Type: application/yaml", status=415
        )
    body = await request.body()  # already size-checked by ApiGuard
    # Reading the raw body needs an async route; the DB work goes to the threadpool like sync routes.
    return await run_in_threadpool(_save_workflow, p, body, if_match)


def _save_workflow(p: Principal, body: bytes, if_match: str | None) -> JSONResponse:
    plan = api_deps.plan_of(p)
    with tenant_session(p.tenant_id) as s:

        def check_plan() -> None:
            usage = limits.Usage(workflows=wfs.count(s, tenant_id=p.tenant_id))
            service.check_plan(limits.check_create_workflow(plan, usage))

        draft = wfs.save_draft(
            s,
            tenant_id=p.tenant_id,
            yaml_text=body,
            author=p.actor_id,
            if_match=if_match,
            on_create=check_plan,
        )
        action = "workflow.create" if draft.created else "workflow.update"
        service.audit(s, p, p.tenant_id, action, draft.row.slug, etag=draft.etag, valid=draft.row.draft_valid)
        out = wfs.summary(draft.row, draft.issues)
    return JSONResponse(out, status_code=201 if draft.created else 200, headers=_etag(out["etag"]))


@api.get(f"{V1}/workflows/{{slug}}")
def get_workflow(slug: str, p: Reader) -> JSONResponse:
    with tenant_session(p.tenant_id) as s:
        row = wfs.get(s, tenant_id=p.tenant_id, slug=slug)
        issues = wfs.issues_of(s, tenant_id=p.tenant_id, row=row)
        out = wfs.summary(row, issues)
        out["yaml"] = row.draft_yaml
        out["versions"] = [_version_out(v) for v in wfs.versions(s, tenant_id=p.tenant_id, slug=slug)]
    return JSONResponse(out, headers=_etag(row.draft_hash))


@api.delete(f"{V1}/workflows/{{slug}}", status_code=204)
def delete_workflow(slug: str, p: Writer) -> Response:
    with tenant_session(p.tenant_id) as s:
        wfs.delete(s, tenant_id=p.tenant_id, slug=slug)
        service.audit(s, p, p.tenant_id, "workflow.delete", slug)
    return Response(status_code=204)


@api.get(f"{V1}/workflows/{{slug}}/versions")
def list_versions(slug: str, p: Reader) -> dict[str, Any]:
    with tenant_session(p.tenant_id) as s:
        row = wfs.get(s, tenant_id=p.tenant_id, slug=slug)
        found = wfs.versions(s, tenant_id=p.tenant_id, slug=slug)
        return {
            "id": slug,
            "published_version": row.published_version,
            "versions": [_version_out(v) for v in found],
        }


@api.get(f"{V1}/workflows/{{slug}}/diff")
def diff_workflow(
    slug: str,
    p: Reader,
    from_n: Annotated[int | None, Query(alias="from", ge=1)] = None,
    to_n: Annotated[int | None, Query(alias="to", ge=1)] = None,
) -> dict[str, Any]:
    """Unified diff between versions ``from`` and ``to`` (either omitted: published -> draft)."""
    with tenant_session(p.tenant_id) as s:
        text = wfs.diff(s, tenant_id=p.tenant_id, slug=slug, from_n=from_n, to_n=to_n)
    return {"id": slug, "from": from_n, "to": to_n, "diff": text}


@api.post(f"{V1}/workflows/{{slug}}/publish")
def publish_workflow(slug: str, p: Writer, if_match: IfMatch = None) -> dict[str, Any]:
    with tenant_session(p.tenant_id) as s:
        v = wfs.publish(s, tenant_id=p.tenant_id, slug=slug, author=p.actor_id, if_match=if_match)
        service.audit(s, p, p.tenant_id, "workflow.publish", slug, version=v.number)
        return {"id": slug, "status": "published", "version": _version_out(v)}


@api.post(f"{V1}/workflows/{{slug}}/rollback")
def rollback_workflow(slug: str, body: RollbackIn, p: Writer) -> dict[str, Any]:
    """Publishes version N's text again as a new version; the draft follows."""
    with tenant_session(p.tenant_id) as s:
        v = wfs.rollback(s, tenant_id=p.tenant_id, slug=slug, number=body.version, author=p.actor_id)
        service.audit(s, p, p.tenant_id, "workflow.rollback", slug, to=body.version, version=v.number)
        return {"id": slug, "status": "published", "version": _version_out(v)}


@api.get(f"{V1}/workflows/{{slug}}/export")
def export_workflow(slug: str, p: Reader, version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """Canonical YAML of the draft, or of version N."""
    with tenant_session(p.tenant_id) as s:
        text = wfs.export(s, tenant_id=p.tenant_id, slug=slug, number=version)
    return Response(text, media_type="application/yaml")


@api.get(f"{V1}/workflows/{{slug}}/tests")
def get_workflow_tests(slug: str, p: Reader) -> Response:
    """The workflow's conversation tests (canonical YAML); 404 ``tests_not_found`` when it has none."""
    with tenant_session(p.tenant_id) as s:
        text = wfs.get_tests(s, tenant_id=p.tenant_id, slug=slug)
    if text is None:
        raise NotFound("tests_not_found", f"workflow '{slug}' has no conversation tests")
    return Response(text, media_type="application/yaml")


@api.put(f"{V1}/workflows/{{slug}}/tests")
async def put_workflow_tests(slug: str, request: Request, p: Writer) -> dict[str, Any]:
    """Replace the conversation tests (YAML body, same media types and size limit as a workflow)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in YAML_TYPES:
        raise ServiceError(
            "unsupported_media_type", "send the tests as Content-Type: application/yaml", status=415
        )
    body = await request.body()  # already size-checked by ApiGuard
    if not body.strip():
        raise Invalid("tests_empty", "the tests file is empty; DELETE removes the tests")
    return await run_in_threadpool(_put_tests, p, slug, body)


def _put_tests(p: Principal, slug: str, body: bytes) -> dict[str, Any]:
    with tenant_session(p.tenant_id) as s:
        tests = wfs.save_tests(s, tenant_id=p.tenant_id, slug=slug, yaml_text=body, author=p.actor_id)
        cases = len(tests.cases) if tests else 0
        service.audit(s, p, p.tenant_id, "workflow.tests", slug, cases=cases)
    return {"id": slug, "cases": cases}


@api.delete(f"{V1}/workflows/{{slug}}/tests", status_code=204)
def delete_workflow_tests(slug: str, p: Writer) -> Response:
    with tenant_session(p.tenant_id) as s:
        wfs.save_tests(s, tenant_id=p.tenant_id, slug=slug, yaml_text=None, author=p.actor_id)
        service.audit(s, p, p.tenant_id, "workflow.tests", slug, cases=0)
    return Response(status_code=204)


# ---------------------------------------------------------------- members


@api.get(f"{V1}/members")
def list_members(p: Admin) -> dict[str, Any]:
    return {"members": service.list_members(p)}


@api.post(f"{V1}/members", status_code=201)
def invite_member(body: InviteIn, p: Admin) -> dict[str, Any]:
    """Invites by email (the link is mailed, never returned); 402 when the plan's seats are used."""
    inv, _token = service.invite(p, body.email, body.role)
    return {"id": inv.id, "email": inv.email, "role": inv.role, "expires_at": inv.expires_at.isoformat()}


@api.patch(f"{V1}/members/{{member_id}}")
def change_member_role(member_id: str, body: RoleIn, p: Admin) -> dict[str, Any]:
    return _member_out(service.change_role(p, member_id, body.role))


@api.delete(f"{V1}/members/{{member_id}}", status_code=204)
def remove_member(member_id: str, p: Admin) -> Response:
    service.remove_member(p, member_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- API keys


@api.get(f"{V1}/api-keys")
def list_api_keys(p: Admin) -> dict[str, Any]:
    return {"api_keys": [_key_out(k) for k in service.list_api_keys(p)]}


@api.post(f"{V1}/api-keys", status_code=201)
def create_api_key(body: ApiKeyIn, p: Admin) -> dict[str, Any]:
    """The plaintext ``key`` is in this response and nowhere else, ever."""
    key, plaintext = service.create_api_key(p, body.name, body.scopes)
    return {**_key_out(key), "key": plaintext}


@api.delete(f"{V1}/api-keys/{{key_id}}", status_code=204)
def revoke_api_key(key_id: str, p: Admin) -> Response:
    service.revoke_api_key(p, key_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- audit, secrets, plan


@api.get(f"{V1}/audit")
def list_audit(p: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    return {"entries": service.list_audit(p, limit=limit)}


@api.put(f"{V1}/secrets/{{name}}", status_code=204)
def put_secret(name: str, body: SecretIn, p: Admin) -> Response:
    """Write-only: no route returns a secret's value (GET here is 405)."""
    service.put_secret(p, name, body.value)
    return Response(status_code=204)


@api.get(f"{V1}/plan")
def plan(p: Anyone) -> dict[str, Any]:
    status = service.plan_status(p)
    return {"plan": status["plan"], "usage": [dataclasses.asdict(u) for u in status["usage"]]}


# ---------------------------------------------------------------- unknown routes

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


# The chat API's routes, before the catch-all below.
api.include_router(chat_router)


@api.api_route(V1 + "/{rest:path}", methods=_METHODS, include_in_schema=False)
async def unknown(request: Request, rest: str) -> JSONResponse:
    """Registered last: an /api/v1 path no route serves is a JSON 404 (or 405), not a Reflex page."""
    allowed = sorted(
        {
            m
            for r in api.router.routes
            if hasattr(r, "methods") and r.matches(request.scope)[0] == Match.PARTIAL
            for m in (r.methods or ())
        }
    )
    if allowed:
        response = api_deps.error_response(405, "method_not_allowed", f"use {', '.join(allowed)} here")
        response.headers["Allow"] = ", ".join(allowed)
        return response
    raise NotFound("not_found", f"no route {request.method} {V1}/{rest}")


# ---------------------------------------------------------------- OIDC single sign-on


async def _oidc_on_login(claims: Any, request: Request) -> Response:
    """A verified identity becomes a browser session: the same ``fd_session`` cookie the pages read."""
    from fastapi.responses import RedirectResponse

    from app.state import SESSION_COOKIE
    from core.settings import get_settings

    settings = get_settings()
    try:
        _p, token = await run_in_threadpool(
            service.login_oidc,
            iss=claims.iss,
            sub=claims.sub,
            email=claims.email,
            email_verified=claims.email_verified,
            name=claims.name,
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
    except ServiceError as e:
        return JSONResponse(e.body(), status_code=e.status)
    response = RedirectResponse(settings.PUBLIC_URL.rstrip("/") + "/workflows", status_code=303)
    # Lax, not Strict: the browser arrives here from the identity provider's redirect.
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.SESSION_TTL_HOURS * 3600,
        path="/",
        samesite="lax",
        secure=settings.PUBLIC_URL.startswith("https://"),
    )
    return response


def mount_oidc(target: FastAPI, settings: Any = None) -> bool:
    """Serve ``/auth/oidc/login`` and ``/auth/oidc/callback`` when OIDC is configured."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    from core.settings import get_settings
    from tenants.oidc import oidc_enabled, oidc_routes
    from tenants.tokens import derive_key

    settings = settings or get_settings()
    if not oidc_enabled(settings):
        return False
    sso = Starlette(
        routes=oidc_routes(_oidc_on_login, settings=settings).routes,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=derive_key(settings, b"flowdesk/session/v1").hex(),
                same_site="lax",
                https_only=settings.PUBLIC_URL.startswith("https://"),
            )
        ],
    )
    target.mount("/auth/oidc", sso)
    return True


mount_oidc(api)
