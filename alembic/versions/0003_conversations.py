"""Conversations and turns (the chat API's messages and the queue's unit of work); RLS on PostgreSQL.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Both are tenant data (DESIGN.md §6): the FORCEd tenant policy (core.db.tenant_rls_sql) and DML
grants for the app role (core.db.grant_app_sql), like 0001 and 0002. A turn belongs to a
conversation of its own tenant through the composite (conversation_id, tenant_id) key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from core.db import grant_app_sql, grantable_app_role, quote_ident, tenant_rls_sql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES_0003 = ("conversations", "turns")
#: The retention job runs with no tenant (it visits them all): it lists tenants and their plans
#: through this SECURITY DEFINER function, like the pre-tenant lookups of 0001 (``tenants`` already
#: has the owner's ``definer_lookup`` policy). ``p_plan`` '' means every plan.
TENANT_PLANS = "flowdesk_tenant_plans"
TENANT_PLANS_BODY = (
    "SELECT t.id, t.plan FROM {s}.tenants AS t WHERE p_plan = '' OR t.plan = p_plan ORDER BY t.id"
)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _create_tables() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("workflow_slug", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("handoff_reason", sa.Text(), nullable=True),
        sa.Column("handoff_priority", sa.String(length=20), nullable=True),
        sa.Column("handoff_queue", sa.String(length=100), nullable=True),
        _ts("handoff_at", nullable=True),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name="fk_conversations_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.UniqueConstraint("id", "tenant_id", name="uq_conversations_id_tenant"),
    )
    op.create_index("ix_conversations_tenant_status", "conversations", ["tenant_id", "status"])
    op.create_table(
        "turns",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("intent", sa.String(length=100), nullable=True),
        sa.Column("route", JSON, nullable=True),
        sa.Column("path", JSON, nullable=True),
        sa.Column("usage", JSON, nullable=True),
        sa.Column("waiting", sa.Boolean(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("feedback", sa.Integer(), nullable=True),
        _ts("created_at"),
        _ts("finished_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id", "tenant_id"],
            ["conversations.id", "conversations.tenant_id"],
            ondelete="CASCADE",
            name="fk_turns_conversation",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_turns"),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_turns_conversation_seq"),
        sa.UniqueConstraint("tenant_id", "conversation_id", "idempotency_key", name="uq_turns_idempotency"),
    )
    op.create_index("ix_turns_tenant_status", "turns", ["tenant_id", "status"])
    op.create_index("ix_turns_tenant_created", "turns", ["tenant_id", "created_at"])


def _upgrade_postgresql() -> None:
    bind = None if context.is_offline_mode() else op.get_bind()
    schema = "public" if bind is None else bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    for table in TABLES_0003:
        for stmt in tenant_rls_sql(table):
            op.execute(stmt)
    s = quote_ident(schema)
    body = TENANT_PLANS_BODY.format(s=s)
    op.execute(
        f"CREATE FUNCTION {s}.{TENANT_PLANS}(p_plan text) RETURNS TABLE (id varchar, plan varchar)"
        " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
        f" AS $fn$ {body} $fn$"
    )
    signature = f"{s}.{quote_ident(TENANT_PLANS)}(text)"
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    role = str(context.config.attributes.get("app_role") or "flowdesk_app")
    if grantable_app_role(bind, role) is None:
        return
    for stmt in grant_app_sql(role, schema, TABLES_0003, [signature]):
        op.execute(stmt)


def upgrade() -> None:
    _create_tables()
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {quote_ident(TENANT_PLANS)}(text)")
    for table in reversed(TABLES_0003):
        op.drop_table(table)
