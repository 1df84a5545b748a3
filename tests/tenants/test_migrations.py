"""Alembic on SQLite and PostgreSQL: upgrade, downgrade, upgrade again; no drift from the models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine

from core import db
from core.settings import ROOT
from tests.db_fixtures import APP_ROLE, OWNER_ROLE, fresh_pg_database

ALEMBIC = Path(sys.executable).parent / "alembic"
TABLES = {
    "tenants",
    "users",
    "memberships",
    "invitations",
    "api_keys",
    "sessions",
    "auth_tokens",
    "audit_log",
    "secrets",
    "workflows",
    "workflow_versions",
    "checkpoints",
    "checkpoint_writes",
    "run_events",
    "conversations",
    "turns",
}


def drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, db.load_models())


def tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def functions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(sa.text("SELECT proname FROM pg_proc WHERE proname LIKE 'flowdesk%'")).scalars()
        )


def round_trip(url: str, **kw: str) -> Engine:
    """upgrade -> no drift -> downgrade -> empty -> upgrade -> no drift."""
    engine = db.make_engine(url, poolclass=sa.pool.NullPool)
    db.migrate(url, **kw)
    assert tables(engine) == {*TABLES, "alembic_version"}
    assert drift(engine) == []
    db.downgrade(url)
    assert tables(engine) == {"alembic_version"}
    db.migrate(url, **kw)
    assert drift(engine) == []
    return engine


def test_round_trip_on_sqlite(tmp_path):
    engine = round_trip(f"sqlite:///{tmp_path}/m.db")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
    engine.dispose()


@pytest.mark.pg
def test_round_trip_on_postgresql():
    with fresh_pg_database() as (owner_url, app_url):
        engine = round_trip(owner_url, app_role=APP_ROLE)
        assert len(functions(engine)) == 5
        db.downgrade(owner_url)
        assert functions(engine) == set()
        db.migrate(owner_url, app_role=APP_ROLE)
        with engine.connect() as conn:  # grants come back with the tables
            for table in TABLES:
                ok = conn.execute(
                    sa.text("SELECT has_table_privilege(:r, :t, 'SELECT, INSERT, UPDATE, DELETE')"),
                    {"r": APP_ROLE, "t": table},
                )
                assert ok.scalar_one() is True, table
            truncate = conn.execute(
                sa.text("SELECT has_table_privilege(:r, 'workflows', 'TRUNCATE')"), {"r": APP_ROLE}
            )
            assert truncate.scalar_one() is False
        engine.dispose()
        app = db.make_engine(app_url, poolclass=sa.pool.NullPool)
        with app.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0004"
        app.dispose()


@pytest.mark.pg
def test_missing_app_role_means_no_grants(caplog):
    with fresh_pg_database() as (owner_url, _app_url):
        db.migrate(owner_url, app_role="fd_no_such_role")
        engine = db.make_engine(owner_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            grantees = conn.execute(
                sa.text(
                    "SELECT DISTINCT grantee FROM information_schema.role_table_grants"
                    " WHERE table_schema = 'public'"
                )
            ).scalars()
            assert set(grantees) == {OWNER_ROLE}
        assert drift(engine) == []  # the schema and the RLS are there all the same
        assert len(functions(engine)) == 5
        engine.dispose()
    assert "fd_no_such_role does not exist" in caplog.text


@pytest.mark.pg
def test_app_role_must_be_a_plain_identifier():
    with fresh_pg_database() as (owner_url, _), pytest.raises(ValueError, match="identifier"):
        db.migrate(owner_url, app_role='x"; DROP TABLE tenants; --')


# ---------------------------------------------------------------- the plain alembic CLI


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MIGRATION_DATABASE_URL"}}
    return subprocess.run(
        [str(ALEMBIC), "-c", str(ROOT / "alembic.ini"), *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_ok(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = cli(args, env, cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_cli_on_the_embedded_sqlite(tmp_path):
    # FLOWDESK_DATA_DIR decides where the embedded database lives; any working directory works.
    env = {"FLOWDESK_DATA_DIR": str(tmp_path / "data")}
    run_ok(["upgrade", "head"], env, tmp_path)
    assert (tmp_path / "data" / "flowdesk.db").exists()
    assert "No new upgrade operations detected" in run_ok(["check"], env, tmp_path)
    run_ok(["downgrade", "base"], env, tmp_path)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'data' / 'flowdesk.db'}")
    assert tables(engine) == {"alembic_version"}
    engine.dispose()


@pytest.mark.pg
def test_cli_on_postgresql_with_the_app_role_argument(tmp_path):
    with fresh_pg_database() as (owner_url, app_url):
        env = {"MIGRATION_DATABASE_URL": owner_url, "DATABASE_URL": app_url}
        run_ok(["-x", f"app_role={APP_ROLE}", "upgrade", "head"], env, tmp_path)
        assert "No new upgrade operations detected" in run_ok(["check"], env, tmp_path)
        engine = db.make_engine(owner_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            ok = conn.execute(
                sa.text("SELECT has_table_privilege(:r, 'workflows', 'SELECT')"), {"r": APP_ROLE}
            )
            assert ok.scalar_one() is True
        run_ok(["downgrade", "base"], env, tmp_path)
        assert tables(engine) == {"alembic_version"}
        engine.dispose()
