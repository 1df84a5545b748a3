"""Runtime tables: conversations and turns, LangGraph checkpoints, the append-only event store.

All are tenant data (``TenantOwned``, listed in ``core.db.TENANT_TABLES``, RLS on
PostgreSQL through revisions 0002 and 0003). Hot paths write them with SQLAlchemy Core on ``__table__``;
the ORM classes exist for the metadata (Alembic) and for occasional reads.
Schema changes need an Alembic revision (alembic/versions/).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from core.db import JSONType, TenantOwned, UTCDateTime, new_id, utcnow

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


class Conversation(SQLModel, TenantOwned, table=True):
    """One end-user conversation with one workflow (DESIGN.md §5); its turns hold the messages.

    ``version`` pins the published version the conversation started on, so a publish never changes
    the graph under a conversation's checkpoints; ``None`` runs the draft (the editor's chat test).
    """

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("id", "tenant_id", name="uq_conversations_id_tenant"),
        Index("ix_conversations_tenant_status", "tenant_id", "status"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", max_length=32)
    workflow_id: str = Field(max_length=32)
    workflow_slug: str = Field(max_length=100)
    version: int | None = Field(default=None)
    channel: str = Field(default="api", max_length=20)
    #: ``active`` | ``waiting_human`` (handed off: the bot stays silent) | ``closed``.
    status: str = Field(default="active", max_length=20)
    handoff_reason: str | None = Field(default=None, sa_type=Text)
    handoff_priority: str | None = Field(default=None, max_length=20)
    handoff_queue: str | None = Field(default=None, max_length=100)
    handoff_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    turns: int = Field(default=0)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Turn(SQLModel, TenantOwned, table=True):
    """One user message and the bot's answer to it; the unit the queue runs (``runtime.jobs``)."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_turns_conversation_seq"),
        # A retried POST with the same Idempotency-Key finds the turn it made the first time.
        UniqueConstraint("tenant_id", "conversation_id", "idempotency_key", name="uq_turns_idempotency"),
        ForeignKeyConstraint(
            ["conversation_id", "tenant_id"],
            ["conversations.id", "conversations.tenant_id"],
            ondelete="CASCADE",
            name="fk_turns_conversation",
        ),
        Index("ix_turns_tenant_status", "tenant_id", "status"),
        Index("ix_turns_tenant_created", "tenant_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=32)
    conversation_id: str = Field(max_length=32)
    seq: int
    idempotency_key: str | None = Field(default=None, max_length=200)
    #: sha256 of the request body: a reused key with another body is refused, not replayed.
    request_hash: str = Field(max_length=64)
    text: str = Field(sa_type=Text)
    #: ``queued`` | ``done`` | ``failed`` (retries exhausted: the user got an apology + a handoff).
    status: str = Field(default="queued", max_length=20)
    reply: str | None = Field(default=None, sa_type=Text)
    intent: str | None = Field(default=None, max_length=100)
    route: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    path: list[str] | None = Field(default=None, sa_type=JSONType)
    usage: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    #: The flow asked the user something and resumes on the next message.
    waiting: bool = Field(default=False)
    #: The conversation was with a human: the bot did not answer this message.
    held: bool = Field(default=False)
    error: str | None = Field(default=None, sa_type=Text)
    feedback: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
