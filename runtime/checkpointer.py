"""A LangGraph checkpointer on our own tenant-scoped tables (``checkpoints``, ``checkpoint_writes``).

LangGraph's stock savers have no tenant column and no RLS, and conversation state is tenant data
(DESIGN.md §6). Every operation here runs in one ``core.db.tenant_session`` transaction (so on
PostgreSQL the ``SET LOCAL app.tenant_id`` and the RLS policy apply) and also filters on
``tenant_id`` itself (SQLite has no RLS). Statements are SQLAlchemy Core: the ORM costs 4-6x
on these hot paths (research/runtime-baseline §3).

Semantics follow langgraph-checkpoint-sqlite 3.x (the same rows, one transaction per call):
whole checkpoints are stored serialized, special writes (error, interrupt, resume...) replace
earlier ones while regular writes are first-wins, pending writes come back in
``writes_sort_key`` order, versions are the monotonic strings of ``InMemorySaver``.

Turn scope (``with saver.turn(tenant_id) as scope``): one saver serves every tenant of a worker;
the tenant comes from the scope (a context variable, so LangGraph's executor threads see it), and
the scope BUFFERS the turn's checkpoints and writes; reads see them merged over the stored rows.
The job then writes them with :func:`flush` in the same transaction as the turn's events and
reply, so a turn is committed whole or not at all: a worker killed mid-turn leaves the previous
checkpoint, and the retried turn starts again from it (DESIGN.md §5, runtime.jobs).

The serializer never uses pickle and only rebuilds the types LangGraph lists as safe
(strict msgpack allow-list): our state is plain dicts, lists and strings.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from sqlalchemy.engine import Connection, Engine

from core.db import tenant_session, utcnow
from runtime.models import CheckpointRow, CheckpointWrite

CHECKPOINTS: sa.Table = cast(sa.Table, CheckpointRow.__table__)
WRITES: sa.Table = cast(sa.Table, CheckpointWrite.__table__)


def safe_serde() -> JsonPlusSerializer:
    """msgpack only: no pickle fallback, and only LangGraph's safe types are rebuilt on load."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


def _upsert(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], *, replace: bool) -> None:
    """INSERT many rows; on a primary-key clash replace them (``replace``) or keep the old ones."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)  # type: ignore[assignment]
    if replace:
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    conn.execute(stmt, rows)


CheckpointKey = tuple[str, str, str]  # (thread_id, checkpoint_ns, checkpoint_id)


@dataclass
class TurnScope:
    """The tenant of the running turn and the checkpoint rows it has not committed yet."""

    tenant_id: str
    checkpoints: dict[CheckpointKey, dict[str, Any]] = field(default_factory=dict)
    writes: dict[tuple[str, str, str, str, int], dict[str, Any]] = field(default_factory=dict)
    #: thread id -> its latest stored root checkpoint (None: the thread has none), see prefetch().
    known: dict[str, Any] = field(default_factory=dict)
    #: The stored writes of those checkpoints.
    known_writes: dict[CheckpointKey, list[Any]] = field(default_factory=dict)


_SCOPE: ContextVar[TurnScope | None] = ContextVar("flowdesk_checkpoint_scope", default=None)


def flush(conn: Connection, scope: TurnScope) -> int:
    """Write a turn's buffered checkpoints and writes on ``conn`` (the caller's transaction)."""
    _upsert(conn, CHECKPOINTS, list(scope.checkpoints.values()), replace=True)
    _upsert(conn, WRITES, list(scope.writes.values()), replace=True)
    n = len(scope.checkpoints) + len(scope.writes)
    scope.checkpoints.clear()
    scope.writes.clear()
    return n


class SqlCheckpointer(BaseCheckpointSaver[str]):
    """Checkpoints in the app database (PostgreSQL with RLS, or SQLite).

    ``tenant_id`` fixes the tenant (immediate writes, one transaction per call); without it the
    saver serves whichever tenant the current :meth:`turn` scope names (buffered writes).
    """

    def __init__(self, engine: Engine, tenant_id: str | None = None) -> None:
        super().__init__(serde=safe_serde())
        self.engine = engine
        self._tenant_id = tenant_id

    @property
    def tenant_id(self) -> str:
        scope = _SCOPE.get()
        if scope is not None:
            return scope.tenant_id
        if self._tenant_id is None:
            raise RuntimeError("SqlCheckpointer without a tenant: use `with saver.turn(tenant_id):`")
        return self._tenant_id

    @contextmanager
    def turn(self, tenant_id: str) -> Iterator[TurnScope]:
        """Run one turn for ``tenant_id``: checkpoint writes are buffered until :func:`flush`."""
        scope = TurnScope(tenant_id)
        token = _SCOPE.set(scope)
        try:
            yield scope
        finally:
            _SCOPE.reset(token)

    def prefetch(self, conn: Connection, thread_id: str) -> None:
        """Load the thread's latest root checkpoint and its writes into the turn scope.

        The worker calls this in the transaction that loads the turn, so the engine's reads of the
        conversation state (LangGraph reads it 2-3 times a turn) need no transaction of their own.
        """
        scope = _SCOPE.get()
        if scope is None:
            raise RuntimeError("prefetch() needs a turn scope")
        c = CHECKPOINTS.c
        row = conn.execute(
            self._select()
            .where(c.thread_id == thread_id, c.checkpoint_ns == "")
            .order_by(c.checkpoint_id.desc())
            .limit(1)
        ).first()
        scope.known[thread_id] = row
        if row is not None:
            scope.known_writes[(thread_id, "", row.checkpoint_id)] = self._stored_writes(
                conn, thread_id, "", row.checkpoint_id
            )

    def _local(self, thread_id: str, ns: str, checkpoint_id: str | None) -> tuple[bool, Any]:
        """(answered, row) from the scope alone, for a prefetched thread's root namespace."""
        scope = _SCOPE.get()
        if scope is None or ns != "" or thread_id not in scope.known:
            return False, None
        rows = self._buffered(thread_id, "", checkpoint_id)
        stored = scope.known[thread_id]
        if stored is not None and checkpoint_id in (None, stored.checkpoint_id):
            rows.append(stored)
        if checkpoint_id is not None and not rows:
            return False, None  # an older checkpoint: ask the database
        return True, max(rows, key=lambda r: r.checkpoint_id) if rows else None

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """The Core connection of one tenant transaction (commits on success)."""
        with tenant_session(self.tenant_id, engine=self.engine) as session:
            yield session.connection()

    @staticmethod
    def _buffered(thread_id: str, ns: str | None, checkpoint_id: str | None = None) -> list[Any]:
        scope = _SCOPE.get()
        if scope is None:
            return []
        return [
            SimpleNamespace(**row)
            for (t, n, c), row in scope.checkpoints.items()
            if t == thread_id and (ns is None or n == ns) and (checkpoint_id is None or c == checkpoint_id)
        ]

    def _stored_writes(self, conn: Connection, thread_id: str, ns: str, checkpoint_id: str) -> list[Any]:
        w = WRITES.c
        return list(
            conn.execute(
                sa.select(w.task_id, w.channel, w.type, w.value, w.task_path, w.idx).where(
                    w.tenant_id == self.tenant_id,
                    w.thread_id == thread_id,
                    w.checkpoint_ns == ns,
                    w.checkpoint_id == checkpoint_id,
                )
            ).all()
        )

    def _writes(self, conn: Connection | None, thread_id: str, ns: str, checkpoint_id: str) -> list[Any]:
        """The checkpoint's pending writes: stored (``conn``; None = prefetched or new) + buffered."""
        scope = _SCOPE.get()
        key = (thread_id, ns, checkpoint_id)
        if conn is not None:
            rows = self._stored_writes(conn, thread_id, ns, checkpoint_id)
        else:
            rows = list(scope.known_writes.get(key, [])) if scope is not None else []
        if scope is not None and scope.writes:
            # Buffered writes of this checkpoint replace stored ones with the same key.
            merged = {(r.task_id, r.idx): r for r in rows}
            for (t, n, c, task, idx), row in scope.writes.items():
                if (t, n, c) == (thread_id, ns, checkpoint_id):
                    merged[(task, idx)] = SimpleNamespace(**row)
            rows = list(merged.values())
        rows.sort(key=lambda r: writes_sort_key(r.task_path, r.task_id, r.idx))
        return [(r.task_id, r.channel, self.serde.loads_typed((r.type, r.value))) for r in rows]

    def _tuple(self, conn: Connection | None, row: Any) -> CheckpointTuple:
        def cfg(checkpoint_id: str) -> RunnableConfig:
            return {
                "configurable": {
                    "thread_id": row.thread_id,
                    "checkpoint_ns": row.checkpoint_ns,
                    "checkpoint_id": checkpoint_id,
                }
            }

        return CheckpointTuple(
            cfg(row.checkpoint_id),
            self.serde.loads_typed((row.type, row.checkpoint)),
            cast(CheckpointMetadata, json.loads(row.metadata) if row.metadata is not None else {}),
            cfg(row.parent_checkpoint_id) if row.parent_checkpoint_id else None,
            self._writes(conn, row.thread_id, row.checkpoint_ns, row.checkpoint_id),
        )

    def _select(self) -> sa.Select[Any]:
        c = CHECKPOINTS.c
        return sa.select(
            c.thread_id,
            c.checkpoint_ns,
            c.checkpoint_id,
            c.parent_checkpoint_id,
            c.type,
            c.checkpoint,
            c.metadata,
        ).where(c.tenant_id == self.tenant_id)

    # ------------------------------------------------------------ the saver API

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        c = CHECKPOINTS.c
        conf = config["configurable"]
        q = self._select().where(
            c.thread_id == str(conf["thread_id"]), c.checkpoint_ns == conf.get("checkpoint_ns", "")
        )
        if checkpoint_id := get_checkpoint_id(config):
            q = q.where(c.checkpoint_id == checkpoint_id)
        else:
            # Checkpoint ids are uuid6 (time-ordered): the greatest is the latest.
            q = q.order_by(c.checkpoint_id.desc()).limit(1)
        answered, local = self._local(str(conf["thread_id"]), conf.get("checkpoint_ns", ""), checkpoint_id)
        if answered:
            return None if local is None else self._tuple(None, local)
        buffered = self._buffered(str(conf["thread_id"]), conf.get("checkpoint_ns", ""), checkpoint_id)
        with self._conn() as conn:
            row = conn.execute(q).first()
            candidates = [*buffered, *([row] if row is not None else [])]
            if not candidates:
                return None
            return self._tuple(conn, max(candidates, key=lambda r: r.checkpoint_id))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        c = CHECKPOINTS.c
        q = self._select()
        if config is not None:
            conf = config["configurable"]
            q = q.where(c.thread_id == str(conf["thread_id"]))
            if conf.get("checkpoint_ns") is not None:
                q = q.where(c.checkpoint_ns == conf["checkpoint_ns"])
            if checkpoint_id := get_checkpoint_id(config):
                q = q.where(c.checkpoint_id == checkpoint_id)
        if before is not None and (before_id := get_checkpoint_id(before)):
            q = q.where(c.checkpoint_id < before_id)
        q = q.order_by(c.checkpoint_id.desc())
        # The metadata filter is applied here, after decoding (portable; lists are short):
        # the LIMIT then has to count matches, not rows.
        if limit is not None and not filter:
            q = q.limit(limit)
        out: list[CheckpointTuple] = []
        with self._conn() as conn:
            rows = conn.execute(q).all()
            if config is not None and (_SCOPE.get() is not None):
                conf = config["configurable"]
                extra = self._buffered(
                    str(conf["thread_id"]), conf.get("checkpoint_ns"), get_checkpoint_id(config)
                )
                if before is not None and (before_id := get_checkpoint_id(before)):
                    extra = [r for r in extra if r.checkpoint_id < before_id]
                seen = {r.checkpoint_id for r in extra}
                rows = sorted(
                    [*extra, *(r for r in rows if r.checkpoint_id not in seen)],
                    key=lambda r: r.checkpoint_id,
                    reverse=True,
                )
            for row in rows:
                item = self._tuple(conn, row)
                if filter and any(item.metadata.get(k) != v for k, v in filter.items()):
                    continue
                out.append(item)
                if limit is not None and len(out) >= limit:
                    break
        yield from out

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False).encode()
        row = {
            "tenant_id": self.tenant_id,
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": conf.get("checkpoint_id"),
            "type": type_,
            "checkpoint": blob,
            "metadata": meta,
            "created_at": utcnow(),
        }
        scope = _SCOPE.get()
        if scope is not None:
            scope.checkpoints[(thread_id, ns, checkpoint["id"])] = row
        else:
            with self._conn() as conn:
                _upsert(conn, CHECKPOINTS, [row], replace=True)
        return {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}
        }

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        rows = []
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            rows.append(
                {
                    "tenant_id": self.tenant_id,
                    "thread_id": str(conf["thread_id"]),
                    "checkpoint_ns": str(conf.get("checkpoint_ns", "")),
                    "checkpoint_id": str(conf["checkpoint_id"]),
                    "task_id": task_id,
                    "idx": WRITES_IDX_MAP.get(channel, idx),
                    "task_path": task_path,
                    "channel": channel,
                    "type": type_,
                    "value": blob,
                }
            )
        # Special writes (error, interrupt, resume) replace; regular writes keep the first copy,
        # so a retried task cannot change what a step already recorded.
        replace = all(w[0] in WRITES_IDX_MAP for w in writes)
        scope = _SCOPE.get()
        if scope is not None:
            for r in rows:
                key = (r["thread_id"], r["checkpoint_ns"], r["checkpoint_id"], r["task_id"], r["idx"])
                if replace or key not in scope.writes:
                    scope.writes[key] = r
            return
        with self._conn() as conn:
            _upsert(conn, WRITES, rows, replace=replace)

    def delete_thread(self, thread_id: str) -> None:
        with self._conn() as conn:
            for table in (WRITES, CHECKPOINTS):
                conn.execute(
                    sa.delete(table).where(
                        table.c.tenant_id == self.tenant_id, table.c.thread_id == str(thread_id)
                    )
                )

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        # InMemorySaver/PostgresSaver's format: zero-padded counter (orders as a string) + random tail.
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # ------------------------------------------------------------ async: the sync calls, inline

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)
