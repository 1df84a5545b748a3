"""Database engine, sessions and tenant scoping (DESIGN.md §6-7).

Two layers keep tenants apart:

* On PostgreSQL, row level security (revision 0001): every tenant-owned table (``TENANT_TABLES``)
  has a FORCEd policy ``tenant_id = current_setting('app.tenant_id', true)``, and
  :func:`tenant_session` sets that setting transaction-locally as the first statement of every
  transaction. A session without a tenant sees and writes nothing tenant-owned.
* On every database, the ORM scopes itself: inside :func:`tenant_session` each ORM SELECT /
  UPDATE / DELETE of a tenant-owned model gets ``tenant_id = :tenant`` added, and a flush that
  would write another tenant's row raises :class:`CrossTenantError`. :func:`system_session`
  hides tenant-owned ORM rows entirely, so the embedded SQLite behaves like PostgreSQL for code
  that goes through the ORM. Raw SQL on SQLite is not scoped: services must filter themselves.

Before the tenant is known (API key, session cookie, login, invitation link) the four lookup
helpers below are the only way in: SECURITY DEFINER functions on PostgreSQL, plain queries on
SQLite, the same frozen dataclasses from both.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect, Engine, make_url
from sqlalchemy.orm import ORMExecuteState, SessionTransaction, with_loader_criteria
from sqlmodel import Session, SQLModel
from sqlmodel.main import default_registry

from core.settings import ROOT, get_settings

# Deterministic constraint names on every SQLModel table (set before any model module defines
# one): migrations and SQLite batch operations need names to refer to.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Every table with a ``tenant_id`` column. Each gets the same RLS policy through
#: :func:`tenant_rls_sql` in the migration that creates it; tests/tenants/test_rls.py checks that
#: every ``tenant_id`` table is listed here and is protected. Add new tenant-owned tables here.
TENANT_TABLES: tuple[str, ...] = (
    "memberships",
    "invitations",
    "api_keys",
    "sessions",
    "audit_log",
    "secrets",
    "workflows",
    "workflow_versions",
    "checkpoints",
    "checkpoint_writes",
    "run_events",
    "conversations",
    "turns",
)
#: ``tenants`` itself is isolated on its primary key (a tenant sees only its own row).
TENANT_ROOT_TABLE = "tenants"
#: Modules whose import registers tables on ``SQLModel.metadata`` (Alembic's autogenerate target).
MODEL_MODULES: tuple[str, ...] = ("tenants.models", "builder.models", "runtime.models")

TENANT_SETTING = "app.tenant_id"
DEFAULT_APP_ROLE = "flowdesk_app"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# ---------------------------------------------------------------- column helpers


def new_id() -> str:
    """Primary keys: uuid4 hex (32 chars), made in Python so they are known before the INSERT."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases.

    SQLite has no time zone type: values are stored as naive UTC (so string order is time order)
    and come back tagged UTC. Naive input is refused: a naive datetime is a bug, not local time.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use core.db.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON documents: JSONB on PostgreSQL (comparable, indexable), JSON text on SQLite.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


class TenantOwned:
    """Marker for ORM models with a ``tenant_id`` column (scoped by :func:`tenant_session`)."""

    tenant_id: str


class TenantRoot:
    """Marker for the tenants table: its ``id`` is the tenant."""

    id: str


class CrossTenantError(PermissionError):
    """An ORM write of a row that belongs to another tenant (or to any tenant, pre-tenant)."""


# ---------------------------------------------------------------- engines


def normalize_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` -> psycopg 3 (psycopg2 is not installed)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL + NORMAL: ~0.03 ms per commit, durable across app crashes (research/runtime-baseline §3).
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The process-wide app engine (``DATABASE_URL``, else SQLite under ``DATA_DIR``)."""
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = make_engine(get_settings().database_url)
    return _engine


def dispose_engine() -> None:
    """Drop the process-wide engine (tests, or after changing settings)."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None


def load_models() -> sa.MetaData:
    """Import every model module; returns the metadata holding all their tables."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return SQLModel.metadata


# ---------------------------------------------------------------- sessions


class TenantSession(Session):
    """A session bound to one tenant (``info["tenant_id"]``); made by :func:`tenant_session`."""


class SystemSession(Session):
    """A session with no tenant; made by :func:`system_session`."""


@event.listens_for(TenantSession, "after_begin")
def _set_tenant(session: Session, _tx: SessionTransaction, connection: Connection) -> None:
    # Runs whenever the session begins a transaction on a connection, before any other statement,
    # so nothing in a tenant session runs without the tenant set. set_config(.., true) is SET LOCAL:
    # it ends with the transaction and cannot leak to the next user of the pooled connection.
    if connection.dialect.name == "postgresql":
        connection.execute(
            sa.text("SELECT set_config(:name, :tid, true)"),
            {"name": TENANT_SETTING, "tid": session.info["tenant_id"]},
        )


_scoped_cache: tuple[int, tuple[type, ...], tuple[type, ...]] = (-1, (), ())


def _scoped_models() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Mapped TenantOwned / TenantRoot classes (recomputed when a model module adds mappers)."""
    global _scoped_cache
    mappers = default_registry.mappers
    if _scoped_cache[0] != len(mappers):
        classes = [m.class_ for m in mappers]
        owned = tuple(c for c in classes if issubclass(c, TenantOwned))
        roots = tuple(c for c in classes if issubclass(c, TenantRoot))
        _scoped_cache = (len(mappers), owned, roots)
    return _scoped_cache[1], _scoped_cache[2]


def _add_criteria(state: ORMExecuteState, tid: str | None) -> None:
    if state.is_column_load or state.is_relationship_load:
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    owned, roots = _scoped_models()
    # One plain criterion per model (the tenant id is a bound parameter: statement caching holds).
    options = [
        with_loader_criteria(cls, sa.false() if tid is None else cls.tenant_id == tid, include_aliases=True)
        for cls in owned
    ] + [
        with_loader_criteria(cls, sa.false() if tid is None else cls.id == tid, include_aliases=True)
        for cls in roots
    ]
    state.statement = state.statement.options(*options)


@event.listens_for(TenantSession, "do_orm_execute")
def _scope_tenant_queries(state: ORMExecuteState) -> None:
    _add_criteria(state, state.session.info["tenant_id"])


@event.listens_for(SystemSession, "do_orm_execute")
def _hide_tenant_rows(state: ORMExecuteState) -> None:
    _add_criteria(state, None)


def _row_tenant(obj: object) -> str | None:
    if isinstance(obj, TenantOwned):
        return obj.tenant_id
    if isinstance(obj, TenantRoot):
        return obj.id
    return None


def _is_tenant_row(obj: object) -> bool:
    return isinstance(obj, TenantOwned | TenantRoot)


@event.listens_for(TenantSession, "before_flush")
def _guard_tenant_writes(session: Session, _ctx: Any, _instances: Any) -> None:
    tid = session.info["tenant_id"]
    for obj in (*session.new, *session.dirty, *session.deleted):
        if _is_tenant_row(obj) and _row_tenant(obj) != tid:
            raise CrossTenantError(f"{type(obj).__name__} of another tenant written in a tenant session")


@event.listens_for(SystemSession, "before_flush")
def _guard_system_writes(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if _is_tenant_row(obj):
            raise CrossTenantError(f"{type(obj).__name__} is tenant-owned: write it in a tenant_session")


@contextmanager
def tenant_session(tenant_id: str, *, engine: Engine | None = None) -> Iterator[Session]:
    """One transaction as ``tenant_id``: commits on success, rolls back on error.

    ``tenant_id`` must come from the authenticated principal, never from a request parameter.
    Objects stay usable after the block (no expiry on commit).
    """
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise ValueError("tenant_session needs a tenant id")
    with (
        TenantSession(engine or get_engine(), expire_on_commit=False, info={"tenant_id": tenant_id}) as s,
        s.begin(),
    ):
        yield s


@contextmanager
def system_session(*, engine: Engine | None = None) -> Iterator[Session]:
    """One transaction with no tenant: global tables (users, auth_tokens) and the lookups below.

    Tenant-owned rows are invisible through it (RLS on PostgreSQL, ORM scoping everywhere).
    """
    with SystemSession(engine or get_engine(), expire_on_commit=False) as s, s.begin():
        yield s


# ---------------------------------------------------------------- pre-tenant lookups


@dataclass(frozen=True, slots=True)
class ApiKeyLookup:
    id: str
    tenant_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionLookup:
    id: str
    user_id: str
    tenant_id: str
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class MembershipLookup:
    tenant_id: str
    role: str
    tenant_name: str
    tenant_slug: str


@dataclass(frozen=True, slots=True)
class InvitationLookup:
    id: str
    tenant_id: str
    email: str
    role: str
    expires_at: datetime
    accepted_at: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _call(session: Session, function: str, arg: str) -> list[sa.Row[Any]]:
    # Name from the fixed set below, argument bound: no SQL is built from input.
    sql = sa.text(f"SELECT * FROM {function}(:arg)")  # noqa: S608
    return list(session.connection().execute(sql, {"arg": arg}))


def _table(name: str) -> sa.Table:
    return load_models().tables[name]


def _is_pg(session: Session) -> bool:
    return session.connection().dialect.name == "postgresql"


def resolve_api_key(session: Session, key_hash: str) -> ApiKeyLookup | None:
    """The API key with this sha256 hex, revoked/expired ones included (the caller decides)."""
    if _is_pg(session):
        rows = _call(session, "flowdesk_resolve_api_key", key_hash)
    else:
        t = _table("api_keys")
        q = sa.select(t.c.id, t.c.tenant_id, t.c.scopes, t.c.expires_at, t.c.revoked_at)
        rows = list(session.connection().execute(q.where(t.c.key_hash == key_hash)))
    if not rows:
        return None
    r = rows[0]
    return ApiKeyLookup(r.id, r.tenant_id, tuple(r.scopes or ()), _utc(r.expires_at), _utc(r.revoked_at))


def resolve_session(session: Session, token_hash: str) -> SessionLookup | None:
    """The login session with this token hash, revoked/expired ones included."""
    if _is_pg(session):
        rows = _call(session, "flowdesk_resolve_session", token_hash)
    else:
        t = _table("sessions")
        q = sa.select(t.c.id, t.c.user_id, t.c.tenant_id, t.c.expires_at, t.c.revoked_at)
        rows = list(session.connection().execute(q.where(t.c.token_hash == token_hash)))
    if not rows:
        return None
    r = rows[0]
    expires = _utc(r.expires_at)
    assert expires is not None
    return SessionLookup(r.id, r.user_id, r.tenant_id, expires, _utc(r.revoked_at))


def user_memberships(session: Session, user_id: str) -> list[MembershipLookup]:
    """The tenants a user belongs to, with the role and the tenant's name, by tenant name."""
    if _is_pg(session):
        rows = _call(session, "flowdesk_user_memberships", user_id)
    else:
        m, t = _table("memberships"), _table("tenants")
        q = (
            sa.select(m.c.tenant_id, m.c.role, t.c.name.label("tenant_name"), t.c.slug.label("tenant_slug"))
            .join(t, t.c.id == m.c.tenant_id)
            .where(m.c.user_id == user_id)
            .order_by(t.c.name, t.c.id)
        )
        rows = list(session.connection().execute(q))
    return [MembershipLookup(r.tenant_id, r.role, r.tenant_name, r.tenant_slug) for r in rows]


def find_invitation(session: Session, token_hash: str) -> InvitationLookup | None:
    """The invitation with this token hash, accepted/expired ones included."""
    if _is_pg(session):
        rows = _call(session, "flowdesk_find_invitation", token_hash)
    else:
        t = _table("invitations")
        q = sa.select(t.c.id, t.c.tenant_id, t.c.email, t.c.role, t.c.expires_at, t.c.accepted_at)
        rows = list(session.connection().execute(q.where(t.c.token_hash == token_hash)))
    if not rows:
        return None
    r = rows[0]
    expires = _utc(r.expires_at)
    assert expires is not None
    return InvitationLookup(r.id, r.tenant_id, r.email, r.role, expires, _utc(r.accepted_at))


def tenant_plans(session: Session) -> list[tuple[str, str]]:
    """Every tenant's (id, plan): for jobs that visit all tenants (retention), not for requests."""
    if _is_pg(session):
        rows = _call(session, "flowdesk_tenant_plans", "")
    else:
        t = _table("tenants")
        rows = list(session.connection().execute(sa.select(t.c.id, t.c.plan).order_by(t.c.id)))
    return [(r.id, r.plan) for r in rows]


# ---------------------------------------------------------------- migration helpers (PostgreSQL)


def quote_ident(name: str) -> str:
    """Only plain lower-case identifiers are accepted; they are quoted anyway."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def tenant_rls_sql(table: str, column: str = "tenant_id") -> list[str]:
    """ENABLE + FORCE row level security on ``table`` with the tenant policy (USING = WITH CHECK).

    FORCE makes the policy bind the table owner too; only superusers and BYPASSRLS roles escape,
    and the app role is neither. An unset ``app.tenant_id`` is NULL: nothing matches.
    """
    t, c = quote_ident(table), quote_ident(column)
    check = f"{c} = current_setting('{TENANT_SETTING}', true)"
    return [
        f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {t} USING ({check}) WITH CHECK ({check})",
    ]


def grantable_app_role(bind: Connection | None, role: str) -> str | None:
    """``role`` when a migration should grant it (it exists and is not the migrating role), else None
    with a warning saying why. Offline (``bind`` None) the role is trusted as named."""
    quote_ident(role)  # refuse anything but a plain identifier before it reaches SQL
    if bind is None:
        return role
    if not bind.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
        logging.getLogger("alembic.runtime.migration").warning(
            "app role %s does not exist: no grants made (create it, then migrate)", role
        )
        return None
    if bind.execute(sa.text("SELECT current_user")).scalar_one() == role:
        logging.getLogger("alembic.runtime.migration").warning(
            "app role %s is the migrating role: no grants made (use two roles)", role
        )
        return None
    return role


def grant_app_sql(role: str, schema: str, tables: Sequence[str], functions: Sequence[str] = ()) -> list[str]:
    """USAGE on ``schema``, DML on ``tables``, EXECUTE on ``functions`` (full signatures) for the app role."""
    r = quote_ident(role)
    out = [f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {r}"]
    out += [f"GRANT SELECT, INSERT, UPDATE, DELETE ON {quote_ident(t)} TO {r}" for t in tables]
    out += [f"GRANT EXECUTE ON FUNCTION {f} TO {r}" for f in functions]
    return out


def app_role_problems(engine: Engine) -> list[str]:
    """Why the connected role could bypass RLS (empty = fine). PostgreSQL only; [] elsewhere."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT r.rolname, r.rolsuper, r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user"
            )
        ).one()
        owned = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_roles o ON o.oid = c.relowner"
                " WHERE o.rolname = current_user AND c.relname = ANY(:tables)"
            ),
            {"tables": [*TENANT_TABLES, TENANT_ROOT_TABLE]},
        ).scalars()
        problems = []
        if row.rolsuper:
            problems.append(f"role {row.rolname} is a superuser (bypasses RLS)")
        if row.rolbypassrls:
            problems.append(f"role {row.rolname} has BYPASSRLS")
        problems += [f"role {row.rolname} owns table {name}" for name in owned]
        return problems


# ---------------------------------------------------------------- migrations


def migrate(url: str | None = None, *, app_role: str | None = None, revision: str = "head") -> None:
    """``alembic upgrade head`` in-process.

    ``url`` defaults to ``MIGRATION_DATABASE_URL``, then ``DATABASE_URL``, then the embedded SQLite.
    ``app_role`` (PostgreSQL) defaults to ``FLOWDESK_APP_ROLE`` or ``flowdesk_app``.
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["url"] = url
    cfg.attributes["app_role"] = app_role
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, revision)


def downgrade(url: str | None = None, *, revision: str = "base") -> None:
    """``alembic downgrade base`` in-process (tests)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logging"] = False
    command.downgrade(cfg, revision)


def migration_url(url: str | None = None) -> str:
    """The URL migrations run against (see :func:`migrate`)."""
    s = get_settings()
    return normalize_url(url or s.MIGRATION_DATABASE_URL or s.database_url)
