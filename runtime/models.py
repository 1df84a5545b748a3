"""Runtime tables: LangGraph checkpoints and the append-only event store (DESIGN.md §5-8).

All three are tenant data (``TenantOwned``, listed in ``core.db.TENANT_TABLES``, RLS on
PostgreSQL through revision 0002). Hot paths write them with SQLAlchemy Core on ``__table__``;
the ORM classes exist for the metadata (Alembic) and for occasional reads.
Schema changes need an Alembic revision (alembic/versions/).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import JSONType, TenantOwned, UTCDateTime, utcnow

#: A bigint identity on PostgreSQL; SQLite only autoincrements an INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class CheckpointRow(SQLModel, TenantOwned, table=True):
    """One LangGraph checkpoint; ``thread_id`` is the conversation id."""

    __tablename__ = "checkpoints"

    tenant_id: str = Field(primary_key=True, max_length=64)
    thread_id: str = Field(primary_key=True, max_length=64)
    checkpoint_ns: str = Field(default="", primary_key=True, max_length=255)
    checkpoint_id: str = Field(primary_key=True, max_length=64)
    parent_checkpoint_id: str | None = Field(default=None, max_length=64)
    type: str | None = Field(default=None, max_length=32)
    checkpoint: bytes | None = Field(default=None, sa_type=LargeBinary)
    #: ``metadata`` is taken on SQLModel classes: the attribute is renamed, the column is not.
    metadata_: bytes | None = Field(default=None, sa_column=Column("metadata", LargeBinary, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class CheckpointWrite(SQLModel, TenantOwned, table=True):
    """A pending write of one task against one checkpoint (LangGraph ``put_writes``)."""

    __tablename__ = "checkpoint_writes"

    tenant_id: str = Field(primary_key=True, max_length=64)
    thread_id: str = Field(primary_key=True, max_length=64)
    checkpoint_ns: str = Field(default="", primary_key=True, max_length=255)
    checkpoint_id: str = Field(primary_key=True, max_length=64)
    task_id: str = Field(primary_key=True, max_length=64)
    idx: int = Field(primary_key=True, sa_type=Integer, sa_column_kwargs={"autoincrement": False})
    #: LangGraph sorts a step's writes by (task_path, task_id, idx) when it replays them.
    task_path: str = Field(default="", max_length=255)
    channel: str = Field(max_length=255)
    type: str | None = Field(default=None, max_length=32)
    value: bytes | None = Field(default=None, sa_type=LargeBinary)


class RunEvent(SQLModel, TenantOwned, table=True):
    """One event of a turn (append-only): node start/finish, route, LLM/tool call, error..."""

    __tablename__ = "run_events"
    __table_args__ = (
        UniqueConstraint("turn_id", "seq", name="uq_run_events_turn_seq"),
        Index("ix_run_events_tenant_conversation", "tenant_id", "conversation_id"),
        Index("ix_run_events_tenant_created", "tenant_id", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=EventId)
    tenant_id: str = Field(max_length=64)
    conversation_id: str = Field(max_length=64)
    turn_id: str = Field(max_length=64)
    seq: int
    type: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
