"""Row level security against the real PostgreSQL, connected as the app role (DESIGN.md §6).

Queries here are raw SQL on purpose: the ORM adds its own tenant filter, and these tests must
prove that the database refuses even when the application forgets it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import select

from builder.models import StoredWorkflow
from core import db
from core.db import TENANT_ROOT_TABLE, TENANT_TABLES, new_id, system_session, tenant_session
from tests.db_fixtures import APP_ROLE, OWNER_ROLE, PgDatabase, Seeded, seed_tenant

pytestmark = pytest.mark.pg

SCOPED = (*TENANT_TABLES, TENANT_ROOT_TABLE)
#: Runtime tables have composite/bigint keys, not a uuid ``id``: their row-level checks are in
#: tests/runtime/test_checkpointer.py (test_runtime_tables_are_row_level_secured).
RUNTIME_TABLES = ("checkpoints", "checkpoint_writes", "run_events")
ROW_SCOPED = tuple(t for t in SCOPED if t not in RUNTIME_TABLES)
#: Seeded attribute holding each table's row id; seed_tenant must cover every scoped table.
ROW_ID = {
    "tenants": "tenant_id",
    "memberships": "membership_id",
    "invitations": "invitation_id",
    "api_keys": "api_key_id",
    "sessions": "session_id",
    "audit_log": "audit_id",
    "secrets": "secret_id",
    "workflows": "workflow_id",
    "workflow_versions": "version_id",
    "conversations": "conversation_id",
    "turns": "turn_id",
}
#: Columns that must differ in a copied row so that only RLS, never a unique key, can refuse it.
UNIQUE_VALUES: dict[str, Callable[[], Any]] = {
    "token_hash": lambda: new_id() * 2,
    "key_hash": lambda: new_id() * 2,
    "slug": lambda: "copy-" + new_id()[:8],
    "number": lambda: 99,
    "seq": lambda: 99,
}
FUNCTIONS = (
    "flowdesk_resolve_api_key",
    "flowdesk_resolve_session",
    "flowdesk_user_memberships",
    "flowdesk_find_invitation",
    "flowdesk_tenant_plans",
)


@dataclass
class World:
    app: Engine  # flowdesk_app: RLS applies
    su: Engine  # superuser on the same database: sees everything (checks only)
    a: Seeded
    b: Seeded


@pytest.fixture
def superuser(pg_db: PgDatabase) -> Engine:
    return pg_db.admin_engine


@pytest.fixture
def w(pg_engine: Engine, superuser: Engine) -> World:
    return World(pg_engine, superuser, seed_tenant(pg_engine, "a"), seed_tenant(pg_engine, "b"))


def col(table: str) -> str:
    return "id" if table == TENANT_ROOT_TABLE else "tenant_id"


def row_id(seeded: Seeded, table: str) -> str:
    return getattr(seeded, ROW_ID[table])


def copied_row(su: Engine, table: str, source_id: str, tenant: str) -> dict[str, Any]:
    """A row of ``table`` (read as superuser), re-keyed and moved to ``tenant``."""
    t = db.load_models().tables[table]
    with su.connect() as conn:
        row = dict(conn.execute(sa.select(t).where(t.c.id == source_id)).one()._mapping)
    row["id"] = tenant if table == TENANT_ROOT_TABLE else new_id()
    if table != TENANT_ROOT_TABLE:
        row["tenant_id"] = tenant
    for name, make in UNIQUE_VALUES.items():
        if name in row:
            row[name] = make()
    return row


def refused_by_rls(action: Callable[[], object]) -> None:
    with pytest.raises(sa.exc.DBAPIError) as info:
        action()
    assert "row-level security" in str(info.value.orig), info.value.orig


def count_all(su: Engine, table: str) -> int:
    with su.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_seed_covers_every_scoped_table():
    assert set(ROW_ID) == set(ROW_SCOPED)


# ---------------------------------------------------------------- (a) no filter: own rows only


@pytest.mark.parametrize("table", ROW_SCOPED)
def test_unfiltered_select_sees_only_the_current_tenant(w, table):
    with w.su.connect() as conn:  # both tenants' rows exist
        everyone = set(conn.execute(sa.text(f"SELECT {col(table)} FROM {table}")).scalars())
    assert everyone == {w.a.tenant_id, w.b.tenant_id}
    for me in (w.a, w.b):
        with tenant_session(me.tenant_id, engine=w.app) as s:
            seen = s.execute(sa.text(f"SELECT {col(table)}, id FROM {table}")).all()
        assert [r[0] for r in seen] == [me.tenant_id]
        assert seen[0][1] == row_id(me, table)


# ---------------------------------------------------------------- (b) another tenant's rows: refused


@pytest.mark.parametrize("table", ROW_SCOPED)
def test_insert_with_another_tenants_id_fails(w, table):
    t = db.load_models().tables[table]
    # For tenants the "other tenant" is a brand-new id: still not the current one.
    target = new_id() if table == TENANT_ROOT_TABLE else w.b.tenant_id
    row = copied_row(w.su, table, row_id(w.b, table), target)
    before = count_all(w.su, table)

    def insert() -> None:
        with tenant_session(w.a.tenant_id, engine=w.app) as s:
            s.execute(sa.insert(t).values(**row))

    refused_by_rls(insert)
    assert count_all(w.su, table) == before


@pytest.mark.parametrize("table", ROW_SCOPED)
def test_moving_an_own_row_to_another_tenant_fails(w, table):
    def move() -> None:
        with tenant_session(w.a.tenant_id, engine=w.app) as s:
            s.execute(
                sa.text(f"UPDATE {table} SET {col(table)} = :b WHERE id = :id"),
                {"b": w.b.tenant_id if table != TENANT_ROOT_TABLE else new_id(), "id": row_id(w.a, table)},
            )

    refused_by_rls(move)
    with tenant_session(w.a.tenant_id, engine=w.app) as s:
        assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 1


@pytest.mark.parametrize("table", ROW_SCOPED)
def test_update_and_delete_of_another_tenants_row_by_id_touch_nothing(w, table):
    b_id = row_id(w.b, table)
    with tenant_session(w.a.tenant_id, engine=w.app) as s:
        upd = s.execute(sa.text(f"UPDATE {table} SET id = id WHERE id = :id"), {"id": b_id})
        dele = s.execute(sa.text(f"DELETE FROM {table} WHERE id = :id"), {"id": b_id})
        got = s.execute(sa.text(f"SELECT * FROM {table} WHERE id = :id"), {"id": b_id}).all()
    assert (upd.rowcount, dele.rowcount, got) == (0, 0, [])
    with tenant_session(w.b.tenant_id, engine=w.app) as s:
        assert s.execute(sa.text(f"SELECT id FROM {table}")).scalars().all() == [b_id]


# ---------------------------------------------------------------- (c) no tenant set: nothing


@pytest.mark.parametrize("table", ROW_SCOPED)
def test_no_tenant_sees_nothing_and_writes_nothing(w, table):
    t = db.load_models().tables[table]
    with system_session(engine=w.app) as s:
        assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        assert s.execute(sa.text(f"DELETE FROM {table}")).rowcount == 0
    with w.app.connect() as conn:  # no helper at all: a plain connection of the app role
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
    row = copied_row(
        w.su, table, row_id(w.a, table), w.a.tenant_id if table != TENANT_ROOT_TABLE else new_id()
    )

    def insert() -> None:
        with system_session(engine=w.app) as s:
            s.execute(sa.insert(t).values(**row))

    refused_by_rls(insert)
    assert count_all(w.su, table) == 2


def test_empty_tenant_setting_sees_nothing(w):
    with w.app.begin() as conn:
        conn.execute(sa.text("SELECT set_config('app.tenant_id', '', true)"))
        assert conn.execute(sa.text("SELECT count(*) FROM workflows")).scalar_one() == 0


def test_tenant_setting_does_not_leak_to_the_next_transaction(pg_db, w):
    engine = db.make_engine(pg_db.app_url, pool_size=1, max_overflow=0)  # one connection, reused
    try:
        with tenant_session(w.a.tenant_id, engine=engine) as s:
            assert s.execute(sa.text("SELECT count(*) FROM workflows")).scalar_one() == 1
            pid = s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with system_session(engine=engine) as s:
            assert s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid
            assert s.execute(sa.text("SELECT current_setting('app.tenant_id', true)")).scalar() in (None, "")
            assert s.execute(sa.text("SELECT count(*) FROM workflows")).scalar_one() == 0
    finally:
        engine.dispose()


# ---------------------------------------------------------------- (d) roles, ownership, FORCE


def test_app_role_cannot_bypass_rls(pg_db, superuser):
    with superuser.connect() as conn:
        role = conn.execute(
            sa.text("SELECT rolsuper, rolbypassrls, rolcreaterole FROM pg_roles WHERE rolname = :r"),
            {"r": APP_ROLE},
        ).one()
        member = conn.execute(
            sa.text("SELECT pg_has_role(:app, :owner, 'MEMBER')"), {"app": APP_ROLE, "owner": OWNER_ROLE}
        )
        can_create = conn.execute(
            sa.text("SELECT has_schema_privilege(:r, 'public', 'CREATE')"), {"r": APP_ROLE}
        )
        assert (role.rolsuper, role.rolbypassrls, role.rolcreaterole) == (False, False, False)
        assert member.scalar_one() is False
        assert can_create.scalar_one() is False
    assert db.app_role_problems(pg_db.app_engine) == []
    problems = db.app_role_problems(pg_db.owner_engine)  # the owner would be a bad app role
    assert any("owns table workflows" in p for p in problems)


def test_every_tenant_id_table_has_forced_rls_and_the_policy(superuser):
    with superuser.connect() as conn:
        with_column = set(
            conn.execute(
                sa.text(
                    "SELECT table_name FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND column_name = 'tenant_id'"
                )
            ).scalars()
        )
        assert with_column == set(TENANT_TABLES)
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
                " pg_get_userbyid(c.relowner) AS owner FROM pg_class c"
                " WHERE c.relname = ANY(:t) AND c.relkind = 'r'"
            ),
            {"t": list(SCOPED)},
        ).all()
        assert {r.relname for r in rows} == set(SCOPED)
        for r in rows:
            assert (r.relrowsecurity, r.relforcerowsecurity, r.owner) == (True, True, OWNER_ROLE), r
        policies = conn.execute(
            sa.text(
                "SELECT tablename, qual, with_check, roles FROM pg_policies"
                " WHERE policyname = 'tenant_isolation'"
            )
        ).all()
    assert {p.tablename for p in policies} == set(SCOPED)
    for p in policies:
        expected = f"(({col(p.tablename)})::text = current_setting('app.tenant_id'::text, true))"
        assert (p.qual, p.with_check, p.roles) == (expected, expected, ["public"]), p


def test_app_role_cannot_switch_rls_off(w):
    with pytest.raises(sa.exc.ProgrammingError, match="must be owner"), w.app.begin() as conn:
        conn.execute(sa.text("ALTER TABLE workflows DISABLE ROW LEVEL SECURITY"))
    with pytest.raises(sa.exc.ProgrammingError, match="must be owner"), w.app.begin() as conn:
        conn.execute(sa.text("DROP POLICY tenant_isolation ON workflows"))
    # row_security=off does not bypass: it turns a filtered query into an error.
    with pytest.raises(sa.exc.DBAPIError, match="row-level security"), w.app.begin() as conn:
        conn.execute(sa.text("SET LOCAL row_security = off"))
        conn.execute(sa.text("SELECT * FROM workflows"))


# ---------------------------------------------------------------- (e) SECURITY DEFINER lookups


def test_lookup_functions_are_locked_down(superuser):
    with superuser.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT p.proname, p.prosecdef, p.proconfig, pg_get_userbyid(p.proowner) AS owner,"
                " has_function_privilege(:app, p.oid, 'EXECUTE') AS app_can,"
                " EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public_can"
                " FROM pg_proc p WHERE p.proname LIKE 'flowdesk%'"
            ),
            {"app": APP_ROLE},
        ).all()
    assert {r.proname for r in rows} == set(FUNCTIONS)
    for r in rows:
        assert (r.prosecdef, r.owner, r.app_can, r.public_can) == (True, OWNER_ROLE, True, False), r
        assert r.proconfig == ["search_path=pg_catalog, pg_temp"]


def test_lookups_work_from_the_app_role_without_opening_the_tables(w):
    with system_session(engine=w.app) as s:
        key = db.resolve_api_key(s, w.b.api_key_hash)
        assert (key.id, key.tenant_id) == (w.b.api_key_id, w.b.tenant_id)
        assert db.resolve_session(s, w.a.session_hash).tenant_id == w.a.tenant_id
        assert db.find_invitation(s, w.a.invitation_hash).tenant_id == w.a.tenant_id
        assert [m.tenant_id for m in db.user_memberships(s, w.a.user_id)] == [w.a.tenant_id]
        # The owner-only lookup policy does not open the tables to the app role.
        for table in ("api_keys", "sessions", "memberships", "invitations", "tenants"):
            assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        # Only the listed columns come back: no hashes, names or other tenants' rows.
        cols = s.execute(
            sa.text("SELECT * FROM flowdesk_resolve_api_key(:h)"), {"h": w.a.api_key_hash}
        ).keys()
        assert list(cols) == ["id", "tenant_id", "scopes", "expires_at", "revoked_at"]
        assert s.execute(sa.text("SELECT count(*) FROM flowdesk_resolve_api_key('')")).scalar_one() == 0


def test_lookups_ignore_objects_the_caller_puts_on_its_search_path(w):
    with system_session(engine=w.app) as s:
        s.execute(
            sa.text("CREATE TEMP TABLE api_keys (id text, tenant_id text, key_hash text) ON COMMIT DROP")
        )
        s.execute(sa.text("INSERT INTO pg_temp.api_keys VALUES ('evil', :t, 'x')"), {"t": w.b.tenant_id})
        s.execute(sa.text("SET LOCAL search_path = pg_temp, public"))
        assert db.resolve_api_key(s, "x") is None
        assert db.resolve_api_key(s, w.a.api_key_hash).id == w.a.api_key_id


# ---------------------------------------------------------------- (f) cross-tenant by id


def test_cross_tenant_workflow_by_id_is_invisible_and_untouchable(w):
    with tenant_session(w.a.tenant_id, engine=w.app) as s:
        by_id = {"id": w.b.workflow_id}
        assert s.execute(sa.text("SELECT * FROM workflows WHERE id = :id"), by_id).all() == []
        assert s.get(StoredWorkflow, w.b.workflow_id) is None
        assert s.exec(select(StoredWorkflow).where(StoredWorkflow.id == w.b.workflow_id)).all() == []
        assert s.execute(sa.text("UPDATE workflows SET name = 'pwned' WHERE id = :id"), by_id).rowcount == 0
        assert (
            s.execute(sa.text("DELETE FROM workflow_versions WHERE workflow_id = :id"), by_id).rowcount == 0
        )
        assert s.execute(sa.text("DELETE FROM workflows WHERE id = :id"), by_id).rowcount == 0
    with tenant_session(w.b.tenant_id, engine=w.app) as s:
        wf = s.get(StoredWorkflow, w.b.workflow_id)
        assert wf is not None and wf.name == "Support"
        assert s.execute(sa.text("SELECT count(*) FROM workflow_versions")).scalar_one() == 1
