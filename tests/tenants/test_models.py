"""Models, constraints, ORM tenant scoping and lookups: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import select

from builder.models import StoredWorkflow, WorkflowVersion
from core import db
from core.db import (
    CrossTenantError,
    new_id,
    system_session,
    tenant_session,
    utcnow,
)
from core.settings import get_settings
from tenants.models import ApiKey, AuditEntry, AuthToken, Membership, Tenant, User, UserSession
from tests.db_fixtures import seed_tenant


def _workflow(tid: str, slug: str = "w") -> StoredWorkflow:
    return StoredWorkflow(tenant_id=tid, slug=slug, draft_yaml="id: w\n", draft_hash="1" * 64)


# ---------------------------------------------------------------- constraints


def test_ids_are_uuid4_hex_and_timestamps_utc(db_engine):
    a = seed_tenant(db_engine, "a")
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        wf = s.get(StoredWorkflow, a.workflow_id)
        assert wf is not None
        assert len(wf.id) == 32 and int(wf.id, 16) >= 0
        assert wf.created_at.tzinfo is not None and wf.created_at.utcoffset() == timedelta(0)


def test_datetimes_round_trip_as_utc_and_naive_is_refused(db_engine):
    a = seed_tenant(db_engine, "a")
    plus2 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        key = s.get(ApiKey, a.api_key_id)
        key.expires_at = plus2
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        got = s.get(ApiKey, a.api_key_id).expires_at
    assert got == plus2 and got.tzinfo == UTC and got.hour == 1
    with (
        pytest.raises(StatementError, match="naive datetime"),
        tenant_session(a.tenant_id, engine=db_engine) as s,
    ):
        s.get(ApiKey, a.api_key_id).expires_at = datetime(2030, 1, 1)
        s.flush()
    # Comparisons in SQL use the same conversion (SQLite stores naive UTC text).
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        later = s.exec(
            select(ApiKey).where(ApiKey.expires_at > datetime(2030, 1, 2, 0, 30, tzinfo=UTC))
        ).all()
        earlier = s.exec(
            select(ApiKey).where(ApiKey.expires_at > datetime(2030, 1, 2, 1, 30, tzinfo=UTC))
        ).all()
    assert [k.id for k in later] == [a.api_key_id] and earlier == []


def test_json_columns_round_trip(db_engine):
    tid = new_id()
    with tenant_session(tid, engine=db_engine) as s:
        s.add(Tenant(id=tid, name="J", slug="j", tier_overrides={"workflows": 50, "nested": {"a": [1]}}))
        s.flush()  # no relationship() between models: parents are flushed first
        s.add(AuditEntry(tenant_id=tid, actor_type="system", action="x", details={"ü": "ß", "n": None}))
    with tenant_session(tid, engine=db_engine) as s:
        assert s.get(Tenant, tid).tier_overrides == {"workflows": 50, "nested": {"a": [1]}}
        assert s.exec(select(AuditEntry)).one().details == {"ü": "ß", "n": None}
        assert s.get(Tenant, tid).plan == "free"


def test_workflow_slug_unique_per_tenant_only(db_engine):
    a, b = seed_tenant(db_engine, "a"), seed_tenant(db_engine, "b")
    # Both tenants already have "support": the same slug in two tenants is fine.
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(_workflow(a.tenant_id, "support"))
    with tenant_session(b.tenant_id, engine=db_engine) as s:
        s.add(_workflow(b.tenant_id, "other"))
        assert len(s.exec(select(StoredWorkflow)).all()) == 2


def test_tenant_slug_is_globally_unique(db_engine):
    seed_tenant(db_engine, "acme")
    tid = new_id()
    with pytest.raises(IntegrityError), tenant_session(tid, engine=db_engine) as s:
        s.add(Tenant(id=tid, name="Other", slug="acme"))


def test_membership_unique_per_tenant_and_user(db_engine):
    a = seed_tenant(db_engine, "a")
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(Membership(tenant_id=a.tenant_id, user_id=a.user_id, role="viewer"))
    b = seed_tenant(db_engine, "b", user_id=a.user_id)  # the same user in another tenant is fine
    with system_session(engine=db_engine) as s:
        assert {m.tenant_id for m in db.user_memberships(s, a.user_id)} == {a.tenant_id, b.tenant_id}


@pytest.mark.parametrize(
    ("model", "field", "bad"),
    [(Tenant, "plan", "enterprise"), (Membership, "role", "superadmin"), (AuditEntry, "actor_type", "robot")],
)
def test_check_constraints_refuse_unknown_values(db_engine, model, field, bad):
    a = seed_tenant(db_engine, "a")
    ids = {Tenant: a.tenant_id, Membership: a.membership_id, AuditEntry: a.audit_id}
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        setattr(s.get(model, ids[model]), field, bad)
        s.flush()


def test_emails_are_stored_lowercased_and_unique(db_engine):
    with system_session(engine=db_engine) as s:
        u = User(email="  Ada@Example.COM ")
        s.add(u)
    with system_session(engine=db_engine) as s:
        assert s.get(User, u.id).email == "ada@example.com"
    with pytest.raises(IntegrityError), system_session(engine=db_engine) as s:
        s.add(User(email="ADA@example.com"))
    # Raw SQL cannot skip the normalisation either (CHECK constraint).
    with pytest.raises(IntegrityError), system_session(engine=db_engine) as s:
        s.execute(
            sa.text(
                "INSERT INTO users (id, email, name, failed_logins, created_at) VALUES (:i, :e, '', 0, :c)"
            ),
            {"i": new_id(), "e": "Bob@example.com", "c": utcnow()},
        )


def test_oidc_identity_is_unique_but_optional(db_engine):
    with system_session(engine=db_engine) as s:
        s.add_all([User(email="p1@x.example"), User(email="p2@x.example")])  # both without OIDC
        s.add(User(email="o1@x.example", oidc_issuer="https://idp", oidc_subject="42"))
    with pytest.raises(IntegrityError), system_session(engine=db_engine) as s:
        s.add(User(email="o2@x.example", oidc_issuer="https://idp", oidc_subject="42"))


def test_token_hashes_are_unique(db_engine):
    a = seed_tenant(db_engine, "a")
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(ApiKey(tenant_id=a.tenant_id, name="dup", prefix="fd_dup", key_hash=a.api_key_hash))
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(
            UserSession(
                token_hash=a.session_hash, user_id=a.user_id, tenant_id=a.tenant_id, expires_at=utcnow()
            )
        )


def test_version_number_unique_per_workflow(db_engine):
    a = seed_tenant(db_engine, "a")
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(
            WorkflowVersion(
                tenant_id=a.tenant_id, workflow_id=a.workflow_id, number=1, yaml="x", content_hash="2" * 64
            )
        )


def test_version_cannot_point_at_another_tenants_workflow(db_engine):
    # Composite FK (workflow_id, tenant_id): holds even where FK checks ignore RLS.
    a, b = seed_tenant(db_engine, "a"), seed_tenant(db_engine, "b")
    with pytest.raises(IntegrityError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(
            WorkflowVersion(
                tenant_id=a.tenant_id, workflow_id=b.workflow_id, number=9, yaml="x", content_hash="2" * 64
            )
        )


def test_deleting_a_tenant_cascades_to_its_rows_only(db_engine):
    a, b = seed_tenant(db_engine, "a"), seed_tenant(db_engine, "b")
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        s.delete(s.get(Tenant, a.tenant_id))
    for seeded, expected in ((a, 0), (b, 1)):
        with tenant_session(seeded.tenant_id, engine=db_engine) as s:
            for model in (Membership, ApiKey, UserSession, StoredWorkflow, WorkflowVersion, AuditEntry):
                assert len(s.exec(select(model)).all()) == expected, model
    with system_session(engine=db_engine) as s:  # users are global: they stay
        assert s.get(User, a.user_id) is not None


def test_deleting_a_user_cascades_memberships_and_nulls_authorship(db_engine):
    a = seed_tenant(db_engine, "a")
    with system_session(engine=db_engine) as s:
        s.add(
            AuthToken(user_id=a.user_id, purpose="password_reset", token_hash="t" * 64, expires_at=utcnow())
        )
    with system_session(engine=db_engine) as s:
        s.execute(sa.delete(User).where(User.id == a.user_id))
        assert s.exec(select(AuthToken)).all() == []
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        assert s.exec(select(Membership)).all() == []
        assert s.exec(select(UserSession)).all() == []
        key = s.get(ApiKey, a.api_key_id)
        assert key is not None and key.created_by is None
        assert s.get(StoredWorkflow, a.workflow_id) is not None


# ---------------------------------------------------------------- ORM scoping (both databases)


def test_orm_queries_in_a_tenant_session_see_only_that_tenant(db_engine):
    a, b = seed_tenant(db_engine, "a"), seed_tenant(db_engine, "b")
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        assert [w.id for w in s.exec(select(StoredWorkflow)).all()] == [a.workflow_id]
        assert [t.id for t in s.exec(select(Tenant)).all()] == [a.tenant_id]
        assert s.get(StoredWorkflow, b.workflow_id) is None
        joined = s.exec(select(WorkflowVersion).join(StoredWorkflow)).all()
        assert [v.id for v in joined] == [a.version_id]
        upd = s.execute(sa.update(StoredWorkflow).where(StoredWorkflow.id == b.workflow_id).values(name="x"))
        dele = s.execute(sa.delete(StoredWorkflow).where(StoredWorkflow.id == b.workflow_id))
        assert upd.rowcount == 0 and dele.rowcount == 0
    with tenant_session(b.tenant_id, engine=db_engine) as s:
        assert s.get(StoredWorkflow, b.workflow_id).name == "Support"


def test_orm_write_of_another_tenants_row_is_refused(db_engine):
    a, b = seed_tenant(db_engine, "a"), seed_tenant(db_engine, "b")
    with pytest.raises(CrossTenantError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(_workflow(b.tenant_id, "sneaky"))
    with pytest.raises(CrossTenantError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.get(StoredWorkflow, a.workflow_id).tenant_id = b.tenant_id
        s.flush()
    with tenant_session(b.tenant_id, engine=db_engine) as s:
        assert [w.slug for w in s.exec(select(StoredWorkflow)).all()] == ["support"]


def test_system_session_hides_tenant_rows_and_refuses_tenant_writes(db_engine):
    a = seed_tenant(db_engine, "a")
    with system_session(engine=db_engine) as s:
        assert s.exec(select(StoredWorkflow)).all() == []
        assert s.exec(select(Tenant)).all() == []
        assert s.get(User, a.user_id) is not None  # global tables are usable
    with pytest.raises(CrossTenantError), system_session(engine=db_engine) as s:
        s.add(_workflow(a.tenant_id, "x"))


def test_tenant_session_commits_or_rolls_back(db_engine):
    a = seed_tenant(db_engine, "a")
    with pytest.raises(RuntimeError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.add(_workflow(a.tenant_id, "rolled-back"))
        s.flush()
        raise RuntimeError("boom")
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        assert s.exec(select(StoredWorkflow).where(StoredWorkflow.slug == "rolled-back")).all() == []
        wf = _workflow(a.tenant_id, "kept")
        s.add(wf)
    assert wf.slug == "kept"  # usable after the block (no expiry on commit)
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        assert s.get(StoredWorkflow, wf.id) is not None


def test_set_config_is_the_first_statement_of_each_tenant_transaction(db_engine):
    a = seed_tenant(db_engine, "a")
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    sa.event.listen(db_engine, "before_cursor_execute", record)
    try:
        with tenant_session(a.tenant_id, engine=db_engine) as s:
            s.exec(select(StoredWorkflow)).all()
            s.get(ApiKey, a.api_key_id).name = "renamed"
    finally:
        sa.event.remove(db_engine, "before_cursor_execute", record)
    sql = [st for st in statements if not st.startswith("PRAGMA")]
    if db_engine.dialect.name == "postgresql":
        assert sql[0].startswith("SELECT set_config(")
        sql = sql[1:]
    assert [st.split()[0] for st in sql] == ["SELECT", "SELECT", "UPDATE"]
    assert all("set_config" not in st for st in sql)
    # The ORM adds the tenant filter to both SELECTs (get() included).
    assert all("tenant_id = " in st for st in sql[:2])


def test_a_tenant_session_is_one_transaction(db_engine):
    a = seed_tenant(db_engine, "a")
    with pytest.raises(sa.exc.InvalidRequestError), tenant_session(a.tenant_id, engine=db_engine) as s:
        s.commit()
        s.exec(select(StoredWorkflow)).all()


@pytest.mark.parametrize("bad", ["", " ", "a'; DROP TABLE tenants; --", None, 7, "x" * 65])
def test_tenant_session_needs_a_real_tenant_id(db_engine, bad):
    with pytest.raises(ValueError), tenant_session(bad, engine=db_engine):
        pass


# ---------------------------------------------------------------- pre-tenant lookups (both databases)


def test_lookups_return_the_matching_row_only(db_engine):
    a, b = seed_tenant(db_engine, "a"), seed_tenant(db_engine, "b")
    with system_session(engine=db_engine) as s:
        key = db.resolve_api_key(s, b.api_key_hash)
        assert key == db.ApiKeyLookup(b.api_key_id, b.tenant_id, ("workflows:read", "chat"), None, None)
        sess = db.resolve_session(s, a.session_hash)
        assert (sess.id, sess.user_id, sess.tenant_id, sess.revoked_at) == (
            a.session_id,
            a.user_id,
            a.tenant_id,
            None,
        )
        assert sess.expires_at > utcnow() and sess.expires_at.tzinfo == UTC
        inv = db.find_invitation(s, b.invitation_hash)
        assert (inv.id, inv.tenant_id, inv.email, inv.role, inv.accepted_at) == (
            b.invitation_id,
            b.tenant_id,
            "new@b.example",
            "editor",
            None,
        )
        assert db.user_memberships(s, a.user_id) == [
            db.MembershipLookup(a.tenant_id, "owner", "Tenant a", "a")
        ]
        # A hash of another kind, a wrong one, or an injection string finds nothing.
        assert db.resolve_api_key(s, a.session_hash) is None
        assert db.resolve_session(s, a.api_key_hash) is None
        assert db.find_invitation(s, "' OR '1'='1") is None
        assert db.resolve_api_key(s, "%") is None
        assert db.user_memberships(s, new_id()) == []


def test_lookups_show_revocation_and_expiry(db_engine):
    a = seed_tenant(db_engine, "a")
    past = utcnow() - timedelta(hours=1)
    with tenant_session(a.tenant_id, engine=db_engine) as s:
        s.get(ApiKey, a.api_key_id).revoked_at = past
        s.get(ApiKey, a.api_key_id).expires_at = past
    with system_session(engine=db_engine) as s:
        key = db.resolve_api_key(s, a.api_key_hash)
    assert key.revoked_at == past and key.expires_at == past


def test_memberships_are_listed_by_tenant_name(db_engine):
    z = seed_tenant(db_engine, "zeta")
    seed_tenant(db_engine, "alpha", user_id=z.user_id)
    with system_session(engine=db_engine) as s:
        assert [m.tenant_slug for m in db.user_memberships(s, z.user_id)] == ["alpha", "zeta"]


# ---------------------------------------------------------------- engines and settings


def test_sqlite_engine_pragmas(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path}/sub/dir/x.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_normalize_url_selects_psycopg3():
    assert db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("postgresql+psycopg://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.fixture
def isolated_settings(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "MIGRATION_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWDESK_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    db.dispose_engine()
    yield tmp_path / "data"
    db.dispose_engine()
    get_settings.cache_clear()


def test_default_engine_is_the_embedded_sqlite_under_data_dir(isolated_settings):
    db.migrate()
    assert (isolated_settings / "flowdesk.db").exists()
    engine = db.get_engine()
    assert engine is db.get_engine()
    assert engine.url.database == str(isolated_settings / "flowdesk.db")
    tid = new_id()
    with tenant_session(tid) as s:
        s.add(Tenant(id=tid, name="Default", slug="default"))
    with tenant_session(tid) as s:
        assert s.get(Tenant, tid).name == "Default"


def test_migration_url_prefers_the_migration_database(monkeypatch, isolated_settings):
    assert db.migration_url() == f"sqlite:///{isolated_settings / 'flowdesk.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@h/d")
    get_settings.cache_clear()
    assert db.migration_url() == "postgresql+psycopg://app@h/d"
    monkeypatch.setenv("MIGRATION_DATABASE_URL", "postgresql://owner@h/d")
    get_settings.cache_clear()
    assert db.migration_url() == "postgresql+psycopg://owner@h/d"
    assert db.migration_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_every_tenant_id_table_is_in_tenant_tables():
    metadata = db.load_models()
    with_tenant = {t.name for t in metadata.tables.values() if "tenant_id" in t.c}
    assert with_tenant == set(db.TENANT_TABLES)
    for table in db.TENANT_TABLES:
        model = next(
            m.class_ for m in sa.orm.class_mapper(Tenant).registry.mappers if m.local_table.name == table
        )
        assert issubclass(model, db.TenantOwned), table
