"""Runtime tables: LangGraph checkpoints, their pending writes, the run event store; RLS on PostgreSQL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

All three are tenant data (DESIGN.md §6): on PostgreSQL each gets the FORCEd tenant policy
(core.db.tenant_rls_sql) and the app role gets DML on them (core.db.grant_app_sql), exactly like
0001. No foreign key to ``tenants``: the runtime writes these on every step, and erasure goes
through runtime.events (delete_conversation / purge_older_than).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from core.db import grant_app_sql, grantable_app_role, quote_ident, tenant_rls_sql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES_0002 = ("checkpoints", "checkpoint_writes", "run_events")


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _create_tables() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_ns", sa.String(length=255), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("parent_checkpoint_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("checkpoint", sa.LargeBinary(), nullable=True),
        sa.Column("metadata", sa.LargeBinary(), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint(
            "tenant_id", "thread_id", "checkpoint_ns", "checkpoint_id", name="pk_checkpoints"
        ),
    )
    op.create_index("ix_checkpoints_created_at", "checkpoints", ["created_at"])
    op.create_table(
        "checkpoint_writes",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_ns", sa.String(length=255), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("task_path", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "thread_id",
            "checkpoint_ns",
            "checkpoint_id",
            "task_id",
            "idx",
            name="pk_checkpoint_writes",
        ),
    )
    op.create_table(
        "run_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.String(length=64), nullable=False),
        sa.Column("turn_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_run_events"),
        sa.UniqueConstraint("turn_id", "seq", name="uq_run_events_turn_seq"),
    )
    op.create_index("ix_run_events_tenant_conversation", "run_events", ["tenant_id", "conversation_id"])
    op.create_index("ix_run_events_tenant_created", "run_events", ["tenant_id", "created_at"])


def _upgrade_postgresql() -> None:
    bind = None if context.is_offline_mode() else op.get_bind()
    schema = "public" if bind is None else bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    for table in TABLES_0002:
        for stmt in tenant_rls_sql(table):
            op.execute(stmt)
    role = str(context.config.attributes.get("app_role") or "flowdesk_app")
    if grantable_app_role(bind, role) is None:
        return
    for stmt in grant_app_sql(role, schema, TABLES_0002):
        op.execute(stmt)
    # The bigint identity of run_events draws from a sequence: INSERT needs USAGE on it.
    op.execute(f"GRANT USAGE ON SEQUENCE {quote_ident('run_events_id_seq')} TO {quote_ident(role)}")


def upgrade() -> None:
    _create_tables()
    if op.get_context().dialect.name == "postgresql":
        _upgrade_postgresql()


def downgrade() -> None:
    # Policies, grants, indexes and the sequence go with their tables.
    for table in reversed(TABLES_0002):
        op.drop_table(table)
