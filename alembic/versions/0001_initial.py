"""Initial schema: tenants, accounts, keys, sessions, audit, secrets, workflows; RLS on PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

On PostgreSQL only (run it as the schema owner, never as the app role):
* every tenant-owned table gets ENABLE + FORCE row level security with the policy
  ``tenant_id = current_setting('app.tenant_id', true)`` for USING and WITH CHECK
  (``tenants`` the same on ``id``): a transaction without the tenant set sees and writes nothing;
* four SECURITY DEFINER functions, owned by the migrating role, with a pinned search_path, for
  the lookups that happen before the tenant is known (API key, login session, a user's
  memberships, invitation). Because FORCE binds the owner too, a SELECT-only policy
  ``TO <migrating role>`` on the five tables they read lets the functions see those rows; the
  app role never gets it, and it cannot become the owner;
* the app role (``-x app_role=`` / FLOWDESK_APP_ROLE / ``flowdesk_app``) gets DML on the tables
  and EXECUTE on the functions. If that role does not exist, no grants are made and nothing is
  created for it (a warning is logged): create the role, then re-run the grants by hand or
  migrate a fresh database. Functions are not executable by PUBLIC.

The table and policy lists below are frozen with this revision: later revisions add their own
tables to core.db.TENANT_TABLES and protect them with core.db.tenant_rls_sql in their own body.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from core.db import grant_app_sql, grantable_app_role, quote_ident, tenant_rls_sql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TENANT_TABLES_0001 = (
    "memberships",
    "invitations",
    "api_keys",
    "sessions",
    "audit_log",
    "secrets",
    "workflows",
    "workflow_versions",
)
ALL_TABLES_0001 = ("tenants", "users", "auth_tokens", *TENANT_TABLES_0001)
#: Tables the SECURITY DEFINER lookups read (they get the owner-only SELECT policy).
LOOKUP_TABLES = ("tenants", "memberships", "invitations", "api_keys", "sessions")

ID = 32


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(length=ID), nullable=False)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name=f"fk_{table}_tenant_id_tenants"
    )


def _user_fk(table: str, column: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["users.id"], ondelete=ondelete, name=f"fk_{table}_{column}_users"
    )


def _roles_check(table: str) -> sa.CheckConstraint:
    return sa.CheckConstraint("role IN ('owner', 'admin', 'editor', 'viewer')", name=f"ck_{table}_role")


def _create_tables() -> None:
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("tier_overrides", _json(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("slug", name="uq_tenants_slug"),
        sa.CheckConstraint("plan IN ('free', 'pro', 'business')", name="ck_tenants_plan"),
    )
    op.create_table(
        "users",
        _id(),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("oidc_issuer", sa.String(length=500), nullable=True),
        sa.Column("oidc_subject", sa.String(length=255), nullable=True),
        _ts("email_verified_at", nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        _ts("locked_until", nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc"),
        sa.CheckConstraint("email = lower(email)", name="ck_users_email_lower"),
    )
    op.create_table(
        "memberships",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("user_id", sa.String(length=ID), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_memberships"),
        _tenant_fk("memberships"),
        _user_fk("memberships", "user_id", "CASCADE"),
        sa.UniqueConstraint("tenant_id", "user_id", name="uq_memberships_tenant_user"),
        _roles_check("memberships"),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    op.create_table(
        "invitations",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by", sa.String(length=ID), nullable=True),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("accepted_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_invitations"),
        _tenant_fk("invitations"),
        _user_fk("invitations", "invited_by", "SET NULL"),
        sa.UniqueConstraint("token_hash", name="uq_invitations_token_hash"),
        _roles_check("invitations"),
        sa.CheckConstraint("email = lower(email)", name="ck_invitations_email_lower"),
    )
    op.create_index("ix_invitations_tenant_id", "invitations", ["tenant_id"])
    op.create_table(
        "api_keys",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", _json(), nullable=False),
        sa.Column("created_by", sa.String(length=ID), nullable=True),
        _ts("created_at"),
        _ts("last_used_at", nullable=True),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        _tenant_fk("api_keys"),
        _user_fk("api_keys", "created_by", "SET NULL"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "sessions",
        _id(),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=ID), nullable=False),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        _tenant_fk("sessions"),
        _user_fk("sessions", "user_id", "CASCADE"),
        sa.UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_tenant_id", "sessions", ["tenant_id"])
    op.create_table(
        "auth_tokens",
        _id(),
        sa.Column("user_id", sa.String(length=ID), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_tokens"),
        _user_fk("auth_tokens", "user_id", "CASCADE"),
        sa.UniqueConstraint("token_hash", name="uq_auth_tokens_token_hash"),
    )
    op.create_index("ix_auth_tokens_user_id", "auth_tokens", ["user_id"])
    op.create_table(
        "audit_log",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=ID), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("details", _json(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        _tenant_fk("audit_log"),
        sa.CheckConstraint("actor_type IN ('user', 'api_key', 'system')", name="ck_audit_log_actor_type"),
    )
    op.create_index("ix_audit_log_tenant_created", "audit_log", ["tenant_id", "created_at"])
    op.create_table(
        "secrets",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_secrets"),
        _tenant_fk("secrets"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_secrets_tenant_name"),
    )
    op.create_table(
        "workflows",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("draft_yaml", sa.Text(), nullable=False),
        sa.Column("draft_hash", sa.String(length=64), nullable=False),
        sa.Column("draft_valid", sa.Boolean(), nullable=False),
        sa.Column("published_version", sa.Integer(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        _tenant_fk("workflows"),
        sa.UniqueConstraint("tenant_id", "slug", name="uq_workflows_tenant_slug"),
        sa.UniqueConstraint("id", "tenant_id", name="uq_workflows_id_tenant"),
    )
    op.create_table(
        "workflow_versions",
        _id(),
        sa.Column("tenant_id", sa.String(length=ID), nullable=False),
        sa.Column("workflow_id", sa.String(length=ID), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=100), nullable=True),
        _ts("created_at"),
        _ts("published_at", nullable=True),
        sa.Column("published_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_versions"),
        _tenant_fk("workflow_versions"),
        sa.ForeignKeyConstraint(
            ["workflow_id", "tenant_id"],
            ["workflows.id", "workflows.tenant_id"],
            ondelete="CASCADE",
            name="fk_workflow_versions_workflow",
        ),
        sa.UniqueConstraint("workflow_id", "number", name="uq_workflow_versions_workflow_number"),
    )
    op.create_index("ix_workflow_versions_tenant_id", "workflow_versions", ["tenant_id"])


# ---------------------------------------------------------------- PostgreSQL: functions

#: name -> (argument, RETURNS TABLE columns, body). Bodies use schema-qualified tables ({s}).
FUNCTIONS: dict[str, tuple[str, str, str]] = {
    "flowdesk_resolve_api_key": (
        "p_key_hash text",
        "id varchar, tenant_id varchar, scopes jsonb, expires_at timestamptz, revoked_at timestamptz",
        "SELECT k.id, k.tenant_id, k.scopes, k.expires_at, k.revoked_at"
        " FROM {s}.api_keys AS k WHERE k.key_hash = p_key_hash",
    ),
    "flowdesk_resolve_session": (
        "p_token_hash text",
        "id varchar, user_id varchar, tenant_id varchar, expires_at timestamptz, revoked_at timestamptz",
        "SELECT x.id, x.user_id, x.tenant_id, x.expires_at, x.revoked_at"
        " FROM {s}.sessions AS x WHERE x.token_hash = p_token_hash",
    ),
    "flowdesk_user_memberships": (
        "p_user_id text",
        "tenant_id varchar, role varchar, tenant_name varchar, tenant_slug varchar",
        "SELECT m.tenant_id, m.role, t.name, t.slug"
        " FROM {s}.memberships AS m JOIN {s}.tenants AS t ON t.id = m.tenant_id"
        " WHERE m.user_id = p_user_id ORDER BY t.name, t.id",
    ),
    "flowdesk_find_invitation": (
        "p_token_hash text",
        "id varchar, tenant_id varchar, email varchar, role varchar,"
        " expires_at timestamptz, accepted_at timestamptz",
        "SELECT i.id, i.tenant_id, i.email, i.role, i.expires_at, i.accepted_at"
        " FROM {s}.invitations AS i WHERE i.token_hash = p_token_hash",
    ),
}


def _signature(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}(text)"


def _create_functions(schema: str) -> None:
    s = quote_ident(schema)
    for name, (arg, returns, body) in FUNCTIONS.items():
        # SECURITY DEFINER runs as this (owner) role: pin search_path so a caller's objects
        # cannot shadow anything the body resolves.
        op.execute(
            f"CREATE FUNCTION {s}.{quote_ident(name)}({arg}) RETURNS TABLE ({returns})"
            " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
            f" AS $fn$ {body.format(s=s)} $fn$"
        )
        op.execute(f"REVOKE ALL ON FUNCTION {_signature(schema, name)} FROM PUBLIC")


def _upgrade_postgresql() -> None:
    offline = context.is_offline_mode()
    bind = None if offline else op.get_bind()
    schema = "public" if bind is None else bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    for table in TENANT_TABLES_0001:
        for stmt in tenant_rls_sql(table):
            op.execute(stmt)
    for stmt in tenant_rls_sql("tenants", column="id"):
        op.execute(stmt)
    for table in LOOKUP_TABLES:
        op.execute(
            f"CREATE POLICY definer_lookup ON {quote_ident(table)} FOR SELECT TO CURRENT_USER USING (true)"
        )
    _create_functions(schema)

    role = str(context.config.attributes.get("app_role") or "flowdesk_app")
    if grantable_app_role(bind, role) is None:
        return
    functions = [_signature(schema, name) for name in FUNCTIONS]
    for stmt in grant_app_sql(role, schema, ALL_TABLES_0001, functions):
        op.execute(stmt)
    # Lets the app check the schema version; it is owned by the migrating role.
    op.execute(f"GRANT SELECT ON alembic_version TO {quote_ident(role)}")


def upgrade() -> None:
    _create_tables()
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for name in FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {quote_ident(name)}(text)")
    # Policies, grants and indexes go with their tables; children before parents.
    for table in (
        "workflow_versions",
        "workflows",
        "secrets",
        "audit_log",
        "auth_tokens",
        "sessions",
        "api_keys",
        "invitations",
        "memberships",
        "users",
        "tenants",
    ):
        op.drop_table(table)
