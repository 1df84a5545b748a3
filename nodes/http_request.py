"""``http_request``: call an API (orders, CRM, payments...) through the SSRF-guarded client, with
retries and an idempotency key; the JSON answer is available as ``<node>.body``.

Templates and references are substituted in ONE pass over the author's text, so no
substituted value is ever scanned again: a user's message containing ``${secret:X}`` stays
literal text (rendering first and resolving after would resolve it), and a secret value
containing ``{{ x }}`` stays literal too (resolving first and rendering after would expand it).
The origin (scheme and host) must be literal or a reference, never a template.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator

from builder.template import MISSING, REF_RE, TEMPLATE_RE, Escape, lookup, render, syntax_errors
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext

TOKEN_RE = re.compile(f"{TEMPLATE_RE.pattern}|{REF_RE.pattern}")
ORIGIN_RE = re.compile(
    r"^(?:\$\{(?:config|secret):[A-Za-z_][A-Za-z0-9_]*\}|https?://[^/?#{}$\s]+)(?:[/?#]|$)"
)
HEADER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
FORBIDDEN_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class UnexpectedStatus(RuntimeError):
    def __init__(self, status: int, message: str, body: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, body


class Config(NodeConfig):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        default="GET", description="HTTP method."
    )
    url: str = Field(
        min_length=1,
        max_length=2000,
        description="e.g. ${config:ORDERS_API}/orders/{{ order_id }} (templates are URL-escaped).",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Headers; ${secret:NAME} allowed.")
    query: dict[str, Any] = Field(default_factory=dict, description="Query parameters; templates allowed.")
    body: Any | None = Field(
        default=None, description="JSON body; a value that is one template keeps its type."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per attempt, seconds.")
    retries: int = Field(default=0, ge=0, le=5, description="Extra attempts on connect errors, 429 and 5xx.")
    expect: list[int] | None = Field(
        default=None, description="Statuses that count as success (default 2xx)."
    )
    idempotency: bool = Field(
        default=True, description="Send an Idempotency-Key so a retried turn never repeats."
    )

    @field_validator("url")
    @classmethod
    def _url_ok(cls, v: str) -> str:
        if not ORIGIN_RE.match(v):
            raise ValueError(
                "url must start with http(s)://host or ${config:NAME}; templates only after the host"
            )
        if errors := syntax_errors(v):
            raise ValueError("; ".join(errors))
        return v

    @field_validator("headers")
    @classmethod
    def _headers_ok(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not HEADER_RE.fullmatch(name) or name.lower() in FORBIDDEN_HEADERS:
                raise ValueError(
                    f"header {name!r} is not allowed (letters, digits and -; not Host/Content-Length)"
                )
        return v

    @field_validator("expect")
    @classmethod
    def _statuses_ok(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(not 100 <= s <= 599 for s in v)):
            raise ValueError("expect lists HTTP statuses between 100 and 599")
        return v


def substitute(
    text: str, values: dict[str, Any], ctx: RunContext, escape: Escape, *, redact: bool = False
) -> str:
    """Templates and ``${...}`` references in one pass (see the module docstring)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return render(m.group(0), values, escape)
        if redact and m.group(2) == "secret":
            return "***"
        return ctx.resolve(m.group(2), m.group(3))

    return TOKEN_RE.sub(sub, text)


def _typed(value: Any, values: dict[str, Any], ctx: RunContext) -> Any:
    if isinstance(value, str):
        m = TEMPLATE_RE.fullmatch(value.strip())
        if m:
            found = lookup(values, m.group(1))
            return None if found is MISSING else found
        return substitute(value, values, ctx, "text")
    if isinstance(value, list):
        return [_typed(v, values, ctx) for v in value]
    if isinstance(value, dict):
        return {k: _typed(v, values, ctx) for k, v in value.items()}
    return value


def _body_of(resp: httpx.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _detail(body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        return str(err["message"])
    return (body if isinstance(body, str) else json.dumps(body, default=str))[:300]


def idempotency_key(ctx: RunContext, method: str, url: str, body: Any, *scope: str) -> str:
    """Same conversation, turn, node and request -> same key: a retried turn repeats nothing,
    while a loop through the node with a different request gets a new key. ``scope`` tells
    apart several calls of one node (a saga's steps: ``("charge", "do")``)."""
    parts = [ctx.conversation_id, ctx.turn_id, ctx.node_id, method, url, body, *scope]
    raw = json.dumps(parts, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def call(
    cfg: Config,
    values: dict[str, Any],
    ctx: RunContext,
    *,
    key_scope: tuple[str, ...] | None = None,
    bounded: bool = True,
) -> dict[str, Any]:
    """Render ``cfg`` against ``values``, send it, return ``{status, body, ok}``; raise
    ``UnexpectedStatus`` when the status is not expected. ``key_scope`` forces an
    ``Idempotency-Key`` on any method, scoped by it, and returns it as ``idempotency_key``.
    ``bounded=False`` gives each attempt its full ``timeout_s`` even past the node's deadline
    (a saga's compensations must get their chance)."""
    url = substitute(cfg.url, values, ctx, "url")
    shown = httpx.URL(substitute(cfg.url, values, ctx, "url", redact=True))
    headers = {k: substitute(v, values, ctx, "text") for k, v in cfg.headers.items()}
    query = {k: v for k, v in ((k, _typed(v, values, ctx)) for k, v in cfg.query.items()) if v is not None}
    body = _typed(cfg.body, values, ctx) if cfg.body is not None else None
    given = next((k for k in headers if k.lower() == "idempotency-key"), None)
    if key_scope is not None:
        headers.pop(given or "", None)
        headers["Idempotency-Key"] = idempotency_key(ctx, cfg.method, url, body, *key_scope)
    elif cfg.idempotency and cfg.method != "GET" and given is None:
        headers["Idempotency-Key"] = idempotency_key(ctx, cfg.method, url, body)
    expect = set(cfg.expect or range(200, 300))

    def tool_called(attempt: int, status: int | None, latency_ms: float, error: str | None) -> None:
        # Method, host and path only: no query values, headers or secrets in events.
        extra = {"error": error} if error else {}
        ctx.emit("tool_called", method=cfg.method, host=shown.host, path=shown.path, status=status,
                 latency_ms=round(latency_ms, 3), attempt=attempt, **extra)  # fmt: skip

    resp = ctx.http.request_retrying(
        cfg.method,
        url,
        retries=cfg.retries,
        success=expect,
        attempt_timeout=(lambda: ctx.remaining(cfg.timeout_s)) if bounded else (lambda: cfg.timeout_s),
        on_attempt=tool_called,
        headers=headers,
        params=query or None,
        json=body,
    )
    value = {"status": resp.status_code, "body": _body_of(resp), "ok": resp.status_code in expect}
    if not value["ok"]:
        where = f"{cfg.method} {shown.host}{shown.path}"
        raise UnexpectedStatus(
            resp.status_code, f"HTTP {resp.status_code} from {where}: {_detail(value['body'])}", value["body"]
        )
    if key_scope is not None:
        value["idempotency_key"] = headers["Idempotency-Key"]
    return value


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    return NodeResult(value=call(cfg, inp.vars, ctx))


NODE = NodeType(
    type="http_request",
    title="HTTP request",
    group="Tools",
    icon="globe",
    config=Config,
    run=run,
    description=__doc__.split("\n\n")[0] if __doc__ else "",
    can_fail=True,
)
