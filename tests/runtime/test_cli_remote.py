"""Server-side CLI (runtime/cli_remote.py) on SQLite and the real PostgreSQL.

``tenants create``, ``migrate`` and ``seed`` run against the test database through the settings
(``DATABASE_URL`` / ``MIGRATION_DATABASE_URL``); ``push``/``pull``/``publish``/``diff`` talk to the
real REST API (app/api.py) served by uvicorn on a free loopback port, over real HTTP.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from sqlalchemy.engine import Engine

from core.db import MembershipLookup, system_session, tenant_session, user_memberships
from core.settings import ROOT, get_settings
from runtime import cli, cli_remote
from tenants import service
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401

HELLO = (ROOT / "tests" / "fixtures" / "canonical.yaml").read_text()
SHIPPED = sorted((ROOT / "workflows").glob("*.yaml"))


def simple(slug: str, text: str) -> str:
    return (
        f"version: 1\nid: {slug}\nname: {slug.title()}\nnodes:\n  - id: start\n    type: start\n"
        f"  - id: hi\n    type: reply\n    config:\n      text: {text}\n  - id: end\n    type: end\n"
        "edges:\n  - {from: start, to: hi}\n  - {from: hi, to: end}\n"
    )


@pytest.fixture
def db(db_engine: Engine, request: pytest.FixtureRequest) -> Iterator[Engine]:  # noqa: F811
    """Settings and the process engine point at the test database (app role on PostgreSQL)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MIGRATION_DATABASE_URL", raising=False)
        mp.delenv("REDIS_URL", raising=False)
        mp.setenv("FLOWDESK_ENV", "dev")
        if db_engine.dialect.name == "postgresql":
            pg = request.getfixturevalue("pg_db")
            mp.setenv("DATABASE_URL", pg.app_url)
            mp.setenv("MIGRATION_DATABASE_URL", pg.owner_url)
        else:
            mp.setenv("DATABASE_URL", db_engine.url.render_as_string(hide_password=False))
        mp.setattr("core.db._engine", db_engine)
        get_settings.cache_clear()
        try:
            yield db_engine
        finally:
            get_settings.cache_clear()
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- operator commands


def test_tenants_create_json_prints_id_and_admin_key(db: Engine, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("owner-password-1234\n"))
    code, out, err = run(
        capsys, "tenants", "create", "Acme", "--owner", "Boss@Acme.example", "--plan", "pro",
        "--password-stdin", "--json",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"tenant_id", "api_key"}
    p = service.principal_for_bearer(data["api_key"])
    assert p.tenant_id == data["tenant_id"] and p.allows("admin")
    tenant = service.tenant_of(p)
    assert (tenant.name, tenant.plan) == ("Acme", "pro")
    owner, _ = service.login("boss@acme.example", "owner-password-1234")
    assert owner.tenant_id == data["tenant_id"] and owner.role == "owner"
    # The key is shown once: only its hash is stored.
    with tenant_session(data["tenant_id"]) as s:
        stored = s.connection().execute(sa.text("SELECT key_hash FROM api_keys")).scalars().all()
    assert data["api_key"] not in stored and len(stored) == 1


def test_tenants_create_refuses_bad_input(db: Engine, capsys):
    code, _, err = run(capsys, "tenants", "create", "Acme", "--owner", "not-an-email", "--json")
    assert code == 1 and "invalid_email" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["tenants", "create", "Acme", "--owner", "a@b.example", "--plan", "gold"])
    assert e.value.code == 2
    with system_session() as s:
        assert s.connection().execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 0


def test_migrate_is_idempotent(db: Engine, capsys):
    assert run(capsys, "migrate")[0] == 0
    assert run(capsys, "migrate")[:2] == (0, "database migrated to head\n")


def test_seed_creates_the_demo_tenant_once(db: Engine, capsys):
    code, out, err = run(capsys, "seed")
    assert code == 0, err
    assert cli_remote.DEMO_EMAIL in out and cli_remote.DEMO_PASSWORD in out
    key = next(line.split(": ", 1)[1] for line in out.splitlines() if "API key" in line)
    p = service.principal_for_bearer(key)
    owner, _ = service.login(cli_remote.DEMO_EMAIL, cli_remote.DEMO_PASSWORD)
    assert owner.tenant_id == p.tenant_id and service.tenant_of(p).name == "Demo Shop"
    with tenant_session(p.tenant_id) as s:
        published = (
            s.connection()
            .execute(
                sa.text("SELECT count(*) FROM workflows WHERE published_version = 1 AND tenant_id = :t"),
                {"t": p.tenant_id},
            )
            .scalar_one()
        )
    assert published == len(SHIPPED)
    code, out, _ = run(capsys, "seed")
    assert code == 0 and "exists already" in out and "API key" not in out
    assert cli_remote._find_demo(cli_remote.DEMO_EMAIL) == p.tenant_id
    with system_session() as s:  # tenants are invisible here on PostgreSQL; the user is global
        assert s.connection().execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 1
    assert [t.tenant_name for t in _memberships(owner.user_id)] == ["Demo Shop"]


def test_seed_leaves_every_shipped_workflow_valid(db: Engine):
    """customer_support is saved before the subflows it names: its stored validity is re-checked."""
    out = cli_remote.seed_demo()
    assert out is not None
    with tenant_session(out["tenant_id"]) as s:
        rows = (
            s.connection()
            .execute(
                sa.text("SELECT slug, draft_valid FROM workflows WHERE tenant_id = :t ORDER BY slug"),
                {"t": out["tenant_id"]},
            )
            .all()
        )
    assert sorted(slug for slug, _ in rows) == sorted(p.stem for p in SHIPPED)
    assert [slug for slug, valid in rows if not valid] == []


def _memberships(user_id: str | None) -> list[MembershipLookup]:
    with system_session() as s:
        return user_memberships(s, str(user_id))


def test_seed_does_nothing_outside_dev(db: Engine, capsys, monkeypatch):
    monkeypatch.setenv("FLOWDESK_ENV", "prod")
    monkeypatch.setenv("FLOWDESK_SECRET_KEY", "a-real-secret-for-this-test-only")
    get_settings.cache_clear()
    code, out, _ = run(capsys, "seed")
    assert code == 0 and "skipped" in out
    with system_session() as s:
        assert s.connection().execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 0


# ---------------------------------------------------------------- REST commands


@pytest.fixture
def api_url(db: Engine) -> Iterator[str]:
    from app.api import api

    server = uvicorn.Server(
        uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def _tenant_key(name: str, scopes: list[str]) -> str:
    tenant, user = service.create_tenant(name, f"owner@{name.lower()}.example", plan="pro")
    p = cli_remote._owner_principal(tenant.id, user.id)
    return service.create_api_key(p, "ci", scopes)[1]


@pytest.fixture
def remote(api_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    key = _tenant_key("Alpha", ["workflows:read", "workflows:write"])
    monkeypatch.setenv("FLOWDESK_URL", api_url)
    monkeypatch.setenv("FLOWDESK_API_KEY", key)
    return key


def test_push_pull_publish_diff_roundtrip(remote: str, tmp_path: Path, capsys):
    f = tmp_path / "greet.yaml"
    f.write_text(simple("greet", "hello"))
    code, out, err = run(capsys, "push", str(f))
    assert code == 0, err
    assert out.startswith(f"{f}: created draft 'greet', valid")
    code, out, err = run(capsys, "publish", "greet")
    assert (code, out) == (0, "published 'greet' as version 1\n"), err

    f.write_text(simple("greet", "hello again"))
    code, out, _ = run(capsys, "push", str(f))
    assert code == 0 and "updated draft 'greet'" in out
    code, out, _ = run(capsys, "diff", "greet")  # published -> draft
    assert code == 0 and "-      text: hello\n+      text: hello again\n" in out
    assert run(capsys, "publish", "greet")[1] == "published 'greet' as version 2\n"
    code, out, _ = run(capsys, "diff", "greet", "--from", "1", "--to", "2")
    assert code == 0 and out.startswith("--- greet@v1\n+++ greet@v2\n")

    pulled = tmp_path / "pulled.yaml"
    code, out, _ = run(capsys, "pull", "greet", "-o", str(pulled))
    assert code == 0 and pulled.read_text() == simple("greet", "hello again")
    code, out, _ = run(capsys, "pull", "greet", "--version", "1")
    assert code == 0 and out == simple("greet", "hello")


def test_push_many_files_with_issues_and_bad_yaml(remote: str, tmp_path: Path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(simple("good", "fine"))
    broken = tmp_path / "broken.yaml"
    broken.write_text(simple("broken", "x").replace("{from: hi, to: end}", "{from: hi, to: ghost}"))
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("version: 1\nid: [unclosed\n")
    code, out, err = run(capsys, "push", str(good), str(broken), str(garbage), str(tmp_path / "missing.yaml"))
    assert code == 1
    assert f"{good}: created draft 'good', valid" in out
    assert f"{broken}: created draft 'broken', INVALID" in out and "EDGE_UNKNOWN_NODE" in out
    assert "error: HTTP 422 yaml_invalid: line 3" in err and f"{garbage}:3:" in err
    assert "missing.yaml: cannot read file" in err
    code, _, err = run(capsys, "publish", "broken")
    assert code == 1 and "error: HTTP 409 workflow_invalid:" in err


def test_http_errors_are_one_clear_line(remote: str, api_url: str, capsys, monkeypatch):
    code, out, err = run(capsys, "pull", "nope")
    assert (code, out) == (1, "") and err.startswith("error: HTTP 404 workflow_not_found:")
    code, _, err = run(capsys, "diff", "nope", "--from", "1")
    assert code == 1 and "HTTP 404" in err
    monkeypatch.setenv("FLOWDESK_API_KEY", "fd_live_" + "A" * 32)
    code, _, err = run(capsys, "publish", "x")
    assert code == 1 and err.startswith("error: HTTP 401 invalid_api_key:")
    reader = _tenant_key("Reader", ["workflows:read"])
    monkeypatch.setenv("FLOWDESK_API_KEY", reader)
    code, _, err = run(capsys, "publish", "x")
    assert code == 1 and err.startswith("error: HTTP 403 insufficient_scope:")
    monkeypatch.setenv("FLOWDESK_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    code, _, err = run(capsys, "pull", "x")
    assert code == 1 and "cannot reach" in err
    monkeypatch.delenv("FLOWDESK_API_KEY")
    with pytest.raises(SystemExit, match="FLOWDESK_API_KEY"):
        cli.main(["pull", "x"])


def test_the_key_decides_the_tenant(remote: str, tmp_path: Path, capsys, monkeypatch):
    f = tmp_path / "mine.yaml"
    f.write_text(simple("mine", "alpha's"))
    assert run(capsys, "push", str(f))[0] == 0
    monkeypatch.setenv("FLOWDESK_API_KEY", _tenant_key("Beta", ["workflows:read", "workflows:write"]))
    code, _, err = run(capsys, "pull", "mine")
    assert code == 1 and "HTTP 404" in err
    assert run(capsys, "publish", "mine")[0] == 1
    f.write_text(simple("mine", "beta's"))
    code, out, _ = run(capsys, "push", str(f))
    assert code == 0 and "created draft 'mine'" in out  # Beta's own, Alpha's untouched
    monkeypatch.setenv("FLOWDESK_API_KEY", remote)
    assert "alpha's" in run(capsys, "pull", "mine")[1]
