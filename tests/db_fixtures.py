"""Database fixtures for every test folder (import them in a conftest.py).

    from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_engine  # noqa: F401

* ``pg_db`` (session): a fresh PostgreSQL database (unique name, dropped at the end) migrated to
  head as ``flowdesk_owner``; a :class:`PgDatabase` with ``app_engine`` (role ``flowdesk_app``:
  not owner, not superuser, NOBYPASSRLS: RLS applies) and ``owner_engine``.
* ``pg_engine`` (function): ``pg_db.app_engine`` after every table was emptied (as superuser).
* ``sqlite_engine`` (function): a migrated SQLite file (one per session), emptied before each test.
* ``db_engine`` (function, parametrized ``sqlite`` / ``pg``): the app engine of each; the ``pg``
  case carries ``@pytest.mark.pg`` (skipped loudly, or failed under CI=true, without PostgreSQL).
* :func:`fresh_pg_database` (context manager): an empty database owned by ``flowdesk_owner`` for
  tests that migrate themselves (tests/tenants/test_migrations.py).

Roles ``flowdesk_owner`` and ``flowdesk_app`` are created when missing (cluster-wide; trust auth
here, a password is set too for servers that need one). Admin URL: ``TEST_DATABASE_URL``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from builder.models import StoredWorkflow, WorkflowVersion
from core.db import load_models, make_engine, migrate, new_id, normalize_url, tenant_session, utcnow
from runtime.models import Conversation, Turn
from tenants.models import ApiKey, AuditEntry, Invitation, Membership, Secret, Tenant, User, UserSession
from tests.conftest import PG_URL, address, reachable, unavailable

OWNER_ROLE = "flowdesk_owner"
APP_ROLE = "flowdesk_app"
ROLE_PASSWORD = "flowdesk-test"


@dataclass
class PgDatabase:
    name: str
    #: The superuser on this database (bypasses RLS: for checks and setup only).
    admin_url: str
    owner_url: str
    app_url: str
    owner_engine: Engine
    app_engine: Engine
    #: Superuser engine on this database (RLS does not apply): cleanup and cross-checks only.
    admin_engine: Engine


def admin_url() -> str:
    return normalize_url(PG_URL)


def role_url(role: str, database: str) -> str:
    url = make_url(admin_url()).set(username=role, password=ROLE_PASSWORD, database=database)
    return url.render_as_string(hide_password=False)


def require_pg() -> None:
    if not reachable(*(pg := address(PG_URL, 5432))):
        unavailable(f"PostgreSQL is not reachable at {pg[0]}:{pg[1]} (set TEST_DATABASE_URL)")


def _admin() -> Engine:
    return make_engine(admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def ensure_roles(admin: Engine) -> None:
    """Create or correct the two roles; the app role must never be able to bypass RLS."""
    attrs = {
        OWNER_ROLE: "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
        APP_ROLE: "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
    }
    with admin.connect() as conn:
        for role, options in attrs.items():
            exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
            if not exists:
                try:
                    conn.execute(sa.text(f'CREATE ROLE "{role}" {options}'))
                except sa.exc.DBAPIError:  # created concurrently by another test run
                    pass
            conn.execute(sa.text(f"ALTER ROLE \"{role}\" {options} PASSWORD '{ROLE_PASSWORD}'"))
        conn.execute(sa.text(f'REVOKE "{OWNER_ROLE}" FROM "{APP_ROLE}"'))


def create_database(admin: Engine, prefix: str = "fd_test") -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}"'))
    return name


def drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def fresh_pg_database() -> Iterator[tuple[str, str]]:
    """An empty database owned by the owner role: yields ``(owner_url, app_url)``."""
    require_pg()
    admin = _admin()
    ensure_roles(admin)
    name = create_database(admin, "fd_mig")
    try:
        yield role_url(OWNER_ROLE, name), role_url(APP_ROLE, name)
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture(scope="session")
def pg_db() -> Iterator[PgDatabase]:
    require_pg()
    admin = _admin()
    ensure_roles(admin)
    name = create_database(admin)
    owner_url, app_url = role_url(OWNER_ROLE, name), role_url(APP_ROLE, name)
    try:
        migrate(owner_url, app_role=APP_ROLE)
        db_admin_url = make_url(admin_url()).set(database=name).render_as_string(hide_password=False)
        db = PgDatabase(
            name,
            db_admin_url,
            owner_url,
            app_url,
            make_engine(owner_url),
            make_engine(app_url),
            make_engine(db_admin_url, pool_size=1),
        )
        try:
            yield db
        finally:
            for engine in (db.app_engine, db.owner_engine, db.admin_engine):
                engine.dispose()
    finally:
        drop_database(admin, name)
        admin.dispose()


def _table_names() -> list[str]:
    return [t.name for t in load_models().sorted_tables]


def empty_tables(engine: Engine) -> None:
    """DELETE every row, children first. On PostgreSQL pass a superuser engine: it is not bound
    by RLS (the owner is, under FORCE), and DELETE on tiny tables is ~10x faster than TRUNCATE."""
    with engine.begin() as conn:
        for name in reversed(_table_names()):
            conn.execute(sa.text(f"DELETE FROM {name}"))


@pytest.fixture
def pg_engine(pg_db: PgDatabase) -> Engine:
    empty_tables(pg_db.admin_engine)
    return pg_db.app_engine


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("sqlite") / "flowdesk.db"
    url = f"sqlite:///{path}"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_db: Engine) -> Engine:
    empty_tables(sqlite_db)
    return sqlite_db


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db_engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"{request.param}_engine")


# ---------------------------------------------------------------- seed data


@dataclass
class Seeded:
    """One tenant with one row in every tenant-owned table (ids and hashes to look them up)."""

    tenant_id: str
    slug: str
    user_id: str
    membership_id: str
    invitation_id: str
    invitation_hash: str
    api_key_id: str
    api_key_hash: str
    session_id: str
    session_hash: str
    audit_id: str
    secret_id: str
    workflow_id: str
    version_id: str
    conversation_id: str
    turn_id: str


def seed_tenant(engine: Engine, slug: str, *, user_id: str | None = None) -> Seeded:
    """Create a tenant through the app path (tenant_session); ``user_id`` reuses a global user."""
    tid = new_id()
    later = utcnow() + timedelta(days=1)
    h = {k: uuid.uuid4().hex + uuid.uuid4().hex for k in ("inv", "key", "sess")}
    with tenant_session(tid, engine=engine) as s:
        s.add(Tenant(id=tid, name=f"Tenant {slug}", slug=slug))
        if user_id is None:
            user = User(email=f"owner@{slug}.example", name=slug)
            s.add(user)
            s.flush()
            user_id = user.id
        s.flush()
        rows = {
            "membership": Membership(tenant_id=tid, user_id=user_id, role="owner"),
            "invitation": Invitation(
                tenant_id=tid,
                email=f"new@{slug}.example",
                role="editor",
                token_hash=h["inv"],
                invited_by=user_id,
                expires_at=later,
            ),
            "api_key": ApiKey(
                tenant_id=tid,
                name="ci",
                prefix=f"fd_{slug}"[:12],
                key_hash=h["key"],
                scopes=["workflows:read", "chat"],
                created_by=user_id,
            ),
            "session": UserSession(token_hash=h["sess"], user_id=user_id, tenant_id=tid, expires_at=later),
            "audit": AuditEntry(tenant_id=tid, actor_type="user", actor_id=user_id, action="tenant.create"),
            "secret": Secret(tenant_id=tid, name="LLM_KEY", ciphertext="not-really-encrypted"),
        }
        wf = StoredWorkflow(
            tenant_id=tid,
            slug="support",
            name="Support",
            draft_yaml="id: support\n",
            draft_hash="0" * 64,
            draft_valid=True,
            published_version=1,
        )
        s.add_all([*rows.values(), wf])
        s.flush()
        version = WorkflowVersion(
            tenant_id=tid,
            workflow_id=wf.id,
            number=1,
            yaml=wf.draft_yaml,
            content_hash=wf.draft_hash,
            author=user_id,
            published_at=utcnow(),
        )
        s.add(version)
        conv = Conversation(tenant_id=tid, workflow_id=wf.id, workflow_slug=wf.slug, version=1, turns=1)
        s.add(conv)
        s.flush()
        turn = Turn(tenant_id=tid, conversation_id=conv.id, seq=1, request_hash="0" * 64, text="hi")
        s.add(turn)
    return Seeded(
        tenant_id=tid,
        slug=slug,
        user_id=user_id,
        membership_id=rows["membership"].id,
        invitation_id=rows["invitation"].id,
        invitation_hash=h["inv"],
        api_key_id=rows["api_key"].id,
        api_key_hash=h["key"],
        session_id=rows["session"].id,
        session_hash=h["sess"],
        audit_id=rows["audit"].id,
        secret_id=rows["secret"].id,
        workflow_id=wf.id,
        version_id=version.id,
        conversation_id=conv.id,
        turn_id=turn.id,
    )
