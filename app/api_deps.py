"""What every ``/api/v1`` route shares: authentication, scopes, rate limits, error bodies, body limits.

* :func:`require` builds the dependency a route declares: Bearer credential -> principal
  (``tenants.service.principal_for_bearer``), rate limit per API key and per tenant (the plan's
  numbers, ``tenants.ratelimit``), then the scope. The tenant comes from the principal only.
* :class:`ApiGuard` is a pure ASGI middleware for ``/api/v1``: it refuses bodies over the limit
  (413) before anything parses them, and adds the ``RateLimit-*`` headers the dependency left in
  the request state to whatever response the route produced.
* :func:`error_response` is the one error shape: ``{"error": {"code", "message", ...}}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from limits.errors import StorageError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import ServiceError, Unauthorized
from tenants import plans, service
from tenants.principal import Principal
from tenants.ratelimit import SCOPE_API_KEY, SCOPE_TENANT, RateLimiter, RateResult, get_rate_limiter, headers

PREFIX = "/api/v1"
MAX_YAML_BYTES = 2 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024
#: Where the larger YAML limit applies (``POST /workflows``: the file itself is the body).
YAML_UPLOAD_PATHS = frozenset({f"{PREFIX}/workflows"})
_STATE_KEY = "flowdesk_ratelimit"


class RateLimited(ServiceError):
    status = 429

    def __init__(self, result: RateResult) -> None:
        super().__init__("rate_limited", f"too many requests; retry in {result.retry_after_s} s")
        self.result = result


class Unavailable(ServiceError):
    status = 503


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse(ServiceError(code, message, status=status, **details).body(), status_code=status)


# ---------------------------------------------------------------- authentication and limits


#: Seconds a tenant's plan name is remembered for rate limiting (one DB read per request saved;
#: a plan change reaches the limiter within this time).
PLAN_CACHE_S = 5.0
_plan_names: dict[str, tuple[float, str]] = {}


def plan_of(p: Principal) -> plans.Plan:
    """The caller's plan (tests replace this to get a small per-minute limit)."""
    now = time.monotonic()
    cached = _plan_names.get(p.tenant_id)
    if cached is None or now - cached[0] > PLAN_CACHE_S:
        if len(_plan_names) > 10_000:
            _plan_names.clear()
        cached = _plan_names[p.tenant_id] = (now, service.tenant_of(p).plan)
    return plans.get_plan(cached[1])


def limiter() -> RateLimiter:
    """The process's limiter (tests replace this with a private memory or Redis one)."""
    return get_rate_limiter()


def _key_id(p: Principal) -> str:
    # A JWT minted for a key (sub "apikey:<id>") spends the same per-key budget as the key.
    return p.actor_id.removeprefix("apikey:")


def bearer(request: Request) -> str:
    raw = request.headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    if not raw or scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("missing_credentials", "send Authorization: Bearer <API key or token>")
    return value.strip()


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def authenticate(request: Request) -> Principal:
    """Credential -> principal, then one hit on the key's and the tenant's rate limits."""
    p = service.principal_for_bearer(bearer(request), ip=_client_ip(request))
    plan = plan_of(p)
    try:
        result = limiter().hit_all(
            [
                (SCOPE_API_KEY, _key_id(p), plan.requests_per_minute_per_key),
                (SCOPE_TENANT, p.tenant_id, plan.requests_per_minute),
            ]
        )
    except StorageError:
        raise Unavailable(
            "rate_limiter_unavailable", "the rate limiter is unavailable; retry shortly"
        ) from None
    if not result.allowed:
        raise RateLimited(result)
    request.state.flowdesk_ratelimit = result
    return p


def require(scope: str | None) -> Callable[[Request], Principal]:
    """A dependency: an authenticated, rate-limited principal holding ``scope`` (None: any)."""

    def dependency(request: Request) -> Principal:
        p = authenticate(request)
        if scope is not None:
            p.require(scope)
        return p

    return dependency


# ---------------------------------------------------------------- exception handlers


def service_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    response = JSONResponse(exc.body(), status_code=exc.status)
    if isinstance(exc, RateLimited):
        response.headers.update(headers(exc.result))
    return response


def _clean(err: dict[str, Any]) -> dict[str, Any]:
    # Never echo the input back (it may be a secret or megabytes); ctx may hold exception objects.
    return {
        "loc": [str(x) for x in err.get("loc", ())],
        "msg": str(err.get("msg", "")),
        "type": err.get("type"),
    }


def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    errors = [_clean(e) for e in getattr(exc, "errors", list)()]
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(422, "invalid_json", "the request body is not valid JSON", errors=errors)
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(x for x in first["loc"] if x != "body") or "request"
    return error_response(422, "invalid_request", f"{where}: {first['msg']}", errors=errors)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    status = int(getattr(exc, "status_code", 500))
    detail = getattr(exc, "detail", None)
    message = detail if isinstance(detail, str) else "request failed"
    response = error_response(status, _HTTP_CODES.get(status, "error"), message)
    for k, v in (getattr(exc, "headers", None) or {}).items():
        response.headers[k] = v
    return response


# ---------------------------------------------------------------- ASGI guard


class ApiGuard:
    """Body-size limits (413 before parsing) and rate-limit headers, for ``/api/v1`` only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        limit = MAX_YAML_BYTES if path in YAML_UPLOAD_PATHS else MAX_JSON_BYTES
        too_large = error_response(413, "too_large", f"the request body is over {limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large(scope, receive, send)
            return
        # Read the (small) body now, counting as we go: chunked uploads have no Content-Length.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                result = state.get(_STATE_KEY)
                if isinstance(result, RateResult):
                    extra = [(k.lower().encode(), v.encode()) for k, v in headers(result).items()]
                    names = {k for k, _ in extra}
                    kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                    message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, replay, send_with_headers)
