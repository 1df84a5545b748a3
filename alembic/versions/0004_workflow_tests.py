"""Conversation tests stored beside each workflow: ``workflows.tests_yaml`` (nullable text).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

The YAML of the workflow's conversation tests (builder.conversation_tests); NULL means none.
Publishing replays them and is refused when one fails. The column sits on a table that already
has its RLS policy and grants (0001), so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workflows", sa.Column("tests_yaml", sa.Text(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table: batch mode does that, PostgreSQL alters in place.
    with op.batch_alter_table("workflows") as batch:
        batch.drop_column("tests_yaml")
