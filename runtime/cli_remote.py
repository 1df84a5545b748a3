"""Server-side ``flowdesk`` commands: operator commands on the database, and the git workflow
through the REST API.

* ``flowdesk migrate``: ``alembic upgrade head`` on ``MIGRATION_DATABASE_URL`` / ``DATABASE_URL`` /
  the embedded SQLite under ``./data/``.
* ``flowdesk seed``: (``FLOWDESK_ENV=dev`` only, idempotent) the demo tenant "Demo Shop", owner
  ``demo@example.com`` / :data:`DEMO_PASSWORD`, with every shipped ``workflows/*.yaml`` published.
* ``flowdesk tenants create NAME --owner EMAIL [--plan P] [--password-stdin] [--json]``: a tenant
  and an admin-scoped API key, printed once (``{"tenant_id", "api_key"}`` with ``--json``).
* ``flowdesk push FILE...`` / ``pull SLUG [-o FILE]`` / ``publish SLUG`` / ``diff SLUG [--from N
  --to M]``: talk to ``FLOWDESK_URL`` with ``FLOWDESK_API_KEY`` (the key decides the tenant), so a
  workflow can live in git and be deployed from CI.

Exit codes: 0 ok, 1 refused (HTTP error, invalid file, service error), 2 usage/configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import ROOT

if TYPE_CHECKING:
    import httpx

    from tenants.principal import Principal

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
SHIPPED = ROOT / "workflows"
DEMO_TENANT = "Demo Shop"
DEMO_EMAIL = "demo@example.com"
#: Documented dev-only login of the seeded demo tenant (never created outside FLOWDESK_ENV=dev).
DEMO_PASSWORD = "demo-shop-2024!"
DEMO_PLAN = "pro"  # the free plan's 3 workflows would not hold the shipped set
HTTP_TIMEOUT_S = 30.0


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


# ---------------------------------------------------------------- operator commands (database)


def cmd_migrate(_args: argparse.Namespace) -> int:
    from core.db import migrate

    migrate()
    print("database migrated to head")
    return EXIT_OK


def _owner_principal(tenant_id: str, user_id: str) -> Principal:
    """The operator acts as the tenant's owner (audit entries and keys name the owner)."""
    from tenants.principal import Principal
    from tenants.roles import ROLE_SCOPES

    return Principal(tenant_id, "user", user_id, ROLE_SCOPES["owner"], role="owner", user_id=user_id)


def cmd_tenants_create(args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.errors import ServiceError
    from tenants import service
    from tenants.plans import UnknownPlanError

    password: str | None = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _err("--password-stdin given but stdin is empty")
            return EXIT_USAGE
    migrate()
    try:
        tenant, user = service.create_tenant(args.name, args.owner, password=password, plan=args.plan)
        _key, plaintext = service.create_api_key(_owner_principal(tenant.id, user.id), "cli", ["admin"])
    except ServiceError as e:
        _err(f"{e.code}: {e.message}")
        return EXIT_FAIL
    except UnknownPlanError as e:
        _err(str(e))
        return EXIT_USAGE
    if args.json:
        print(json.dumps({"tenant_id": tenant.id, "api_key": plaintext}))
    else:
        print(f"tenant {tenant.name!r} created: id {tenant.id}, plan {tenant.plan}, owner {user.email}")
        print(f"admin API key (shown once, store it now): {plaintext}")
    return EXIT_OK


def _find_demo(email: str) -> str | None:
    from sqlmodel import select

    from core.db import system_session, user_memberships
    from tenants.models import User

    with system_session() as s:
        user = s.exec(select(User).where(User.email == email)).first()
        if user is None:
            return None
        return next((m.tenant_id for m in user_memberships(s, user.id) if m.tenant_name == DEMO_TENANT), None)


def seed_demo(workflow_dir: Path = SHIPPED) -> dict[str, Any] | None:
    """Create the demo tenant with the given workflows published; None when it already exists."""
    from builder import service as wfs
    from core.db import tenant_session
    from tenants import service

    if _find_demo(DEMO_EMAIL) is not None:
        return None
    tenant, user = service.create_tenant(DEMO_TENANT, DEMO_EMAIL, password=DEMO_PASSWORD, plan=DEMO_PLAN)
    p = _owner_principal(tenant.id, user.id)
    _key, plaintext = service.create_api_key(p, "demo", ["admin"])
    files = sorted(workflow_dir.glob("*.yaml"))
    published: list[str] = []
    with tenant_session(tenant.id) as s:
        # All drafts first, then publish: publishing re-validates, so subflows resolve in any order.
        slugs = [
            wfs.save_draft(s, tenant_id=tenant.id, yaml_text=f.read_bytes(), author=user.id).row.slug
            for f in files
        ]
        for slug in slugs:
            wfs.publish(s, tenant_id=tenant.id, slug=slug, author=user.id)
            published.append(slug)
        # A draft saved before its subflows existed was stored invalid: check every one again.
        for slug in slugs:
            wfs.refresh_validity(s, tenant_id=tenant.id, slug=slug)
        service.audit(s, p, tenant.id, "demo.seed", None, workflows=published)
    return {"tenant_id": tenant.id, "email": DEMO_EMAIL, "api_key": plaintext, "workflows": published}


def cmd_seed(_args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.errors import ServiceError
    from core.settings import get_settings

    env = get_settings().ENV
    if env != "dev":
        print(f"seed: skipped (FLOWDESK_ENV={env}; the demo tenant exists in dev only)")
        return EXIT_OK
    migrate()
    try:
        out = seed_demo()
    except ServiceError as e:
        _err(f"{e.code}: {e.message}")
        return EXIT_FAIL
    if out is None:
        print(f"seed: the demo tenant {DEMO_TENANT!r} exists already; nothing to do")
        return EXIT_OK
    print(f"seed: created {DEMO_TENANT!r} with {len(out['workflows'])} published workflows")
    print(f"  log in as {DEMO_EMAIL} / {DEMO_PASSWORD}  (dev only)")
    print(f"  admin API key (shown once): {out['api_key']}")
    return EXIT_OK


# ---------------------------------------------------------------- REST commands


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message, self.body = status, code, message, body


@contextmanager
def api_client() -> Iterator[httpx.Client]:
    """An httpx client for ``FLOWDESK_URL`` authenticated by ``FLOWDESK_API_KEY``."""
    import httpx

    url = os.environ.get("FLOWDESK_URL", "").strip().rstrip("/")
    key = os.environ.get("FLOWDESK_API_KEY", "").strip()
    if not url or not key:
        raise SystemExit("error: set FLOWDESK_URL and FLOWDESK_API_KEY (the key decides the tenant)")
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"error: FLOWDESK_URL must start with http:// or https://, not {url!r}")
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "flowdesk-cli"}
    with httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT_S) as client:
        yield client


def _check(r: httpx.Response) -> httpx.Response:
    if r.status_code < 400:
        return r
    try:
        body = r.json()
        err = body["error"]
        code, message = str(err.get("code", "error")), str(err.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        body, code, message = {}, "http_error", r.text[:300].strip() or r.reason_phrase
    raise ApiError(r.status_code, code, message, body if isinstance(body, dict) else {})


def _slug_path(slug: str) -> str:
    from urllib.parse import quote

    return f"/api/v1/workflows/{quote(slug, safe='')}"


def _format_issue(where: str, issue: dict[str, Any]) -> str:
    line, col = issue.get("line") or 1, issue.get("col") or 1
    severity = issue.get("severity", "error")
    return f"{where}:{line}:{col}: {severity} {issue.get('code', '?')} {issue.get('message', '')}"


def _print_api_error(e: ApiError, where: str | None = None) -> None:
    _err(f"HTTP {e.status} {e.code}: {e.message}")
    issues = e.body.get("error", {}).get("issues") if isinstance(e.body.get("error"), dict) else None
    for issue in issues or []:
        if isinstance(issue, dict):
            print(_format_issue(where or "<server>", issue), file=sys.stderr)


def _remote(fn: Any) -> Any:
    """Run a REST command: API and connection errors become one clear line and exit 1."""
    import httpx

    def run(args: argparse.Namespace) -> int:
        try:
            with api_client() as client:
                return int(fn(client, args))
        except ApiError as e:
            _print_api_error(e)
            return EXIT_FAIL
        except httpx.HTTPError as e:
            _err(f"cannot reach {os.environ.get('FLOWDESK_URL')}: {e}")
            return EXIT_FAIL

    return run


def push(client: httpx.Client, args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.files:
        path = Path(name)
        try:
            body = path.read_bytes()
        except OSError as e:
            _err(f"{path}: cannot read file: {e.strerror}")
            status = EXIT_FAIL
            continue
        try:
            r = _check(
                client.post("/api/v1/workflows", content=body, headers={"Content-Type": "application/yaml"})
            )
        except ApiError as e:
            _print_api_error(e, str(path))
            status = EXIT_FAIL
            continue
        out = r.json()
        issues = out.get("issues") or []
        verb = "created" if r.status_code == 201 else "updated"
        state = "valid" if out.get("valid") else "INVALID (saved, cannot be published)"
        print(f"{path}: {verb} draft '{out.get('id')}', {state}, etag {out.get('etag')}")
        for issue in issues:
            print(_format_issue(str(path), issue))
        if not out.get("valid"):
            status = EXIT_FAIL
    return status


def pull(client: httpx.Client, args: argparse.Namespace) -> int:
    params = {"version": args.version} if args.version else None
    text = _check(client.get(f"{_slug_path(args.slug)}/export", params=params)).text
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: written ({args.slug}{f' v{args.version}' if args.version else ' draft'})")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def publish(client: httpx.Client, args: argparse.Namespace) -> int:
    out = _check(client.post(f"{_slug_path(args.slug)}/publish")).json()
    print(f"published '{args.slug}' as version {out['version']['number']}")
    return EXIT_OK


def diff(client: httpx.Client, args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("from", args.from_n), ("to", args.to_n)) if v is not None}
    out = _check(client.get(f"{_slug_path(args.slug)}/diff", params=params)).json()
    sys.stdout.write(out.get("diff", ""))
    return EXIT_OK


# ---------------------------------------------------------------- registration


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a version number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("version numbers start at 1")
    return n


def register(sub: Any) -> None:
    """Add the server-side subcommands to ``flowdesk``'s subparsers (runtime/cli.py)."""
    s = sub.add_parser("migrate", help="migrate the database (alembic upgrade head)")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("seed", help="dev only: create the demo tenant with the shipped workflows")
    s.set_defaults(fn=cmd_seed)

    t = sub.add_parser("tenants", help="operator commands on tenants (direct database access)")
    tsub = t.add_subparsers(dest="tenants_command", required=True)
    s = tsub.add_parser("create", help="create a tenant and its owner; prints an admin API key once")
    s.add_argument("name")
    s.add_argument("--owner", required=True, metavar="EMAIL")
    s.add_argument("--plan", default="free", choices=("free", "pro", "business"))
    s.add_argument("--password-stdin", action="store_true", help="read the owner's password from stdin")
    s.add_argument("--json", action="store_true", help='print {"tenant_id", "api_key"}')
    s.set_defaults(fn=cmd_tenants_create)

    s = sub.add_parser("push", help="upload workflow files as drafts (FLOWDESK_URL, FLOWDESK_API_KEY)")
    s.add_argument("files", nargs="+")
    s.set_defaults(fn=_remote(push))

    s = sub.add_parser("pull", help="download a workflow's canonical YAML")
    s.add_argument("slug")
    s.add_argument("-o", "--output", help="write to this file (default: stdout)")
    s.add_argument("--version", type=_positive, help="a published version (default: the draft)")
    s.set_defaults(fn=_remote(pull))

    s = sub.add_parser("publish", help="publish a workflow's current draft")
    s.add_argument("slug")
    s.set_defaults(fn=_remote(publish))

    s = sub.add_parser("diff", help="unified diff of two versions (default: published -> draft)")
    s.add_argument("slug")
    s.add_argument("--from", dest="from_n", type=_positive, metavar="N")
    s.add_argument("--to", dest="to_n", type=_positive, metavar="M")
    s.set_defaults(fn=_remote(diff))
