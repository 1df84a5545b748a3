"""The event store: append a turn's events, read them back, rebuild the turn's trace, erase.

``run_events`` is append-only and tenant data. A turn's events go in with ONE transaction and one
Core ``executemany`` (DESIGN.md §8: ~0.3 ms per commit on PostgreSQL, the per-row cost is tiny);
the tenant is set in that same transaction by ``core.db.tenant_session``. Events are the dicts
of ``TurnResult.events`` (``{**payload, "seq", "type", "ts"}``): ``seq`` and ``type`` get their
own columns, the rest is the JSON payload, and ``ts`` (epoch seconds) also sets ``created_at``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import tenant_session, utcnow
from runtime.models import CheckpointRow, CheckpointWrite, RunEvent

EVENTS: sa.Table = cast(sa.Table, RunEvent.__table__)
CHECKPOINTS: sa.Table = cast(sa.Table, CheckpointRow.__table__)
WRITES: sa.Table = cast(sa.Table, CheckpointWrite.__table__)


def _row(tenant_id: str, conversation_id: str, turn_id: str, event: dict[str, Any], n: int) -> dict[str, Any]:
    payload = {k: v for k, v in event.items() if k not in ("seq", "type")}
    # A payload the JSON column cannot take must not lose the whole turn's events.
    payload = json.loads(json.dumps(payload, default=str))
    ts = event.get("ts")
    created = datetime.fromtimestamp(ts, UTC) if isinstance(ts, int | float) else utcnow()
    return {
        "tenant_id": tenant_id,
        "conversation_id": conversation_id,
        "turn_id": turn_id,
        "seq": int(event.get("seq", n)),
        "type": str(event["type"]),
        "payload": payload,
        "created_at": created,
    }


def append_events(
    engine: Engine, tenant_id: str, conversation_id: str, turn_id: str, events: list[dict[str, Any]]
) -> None:
    """Insert all of a turn's events in one transaction (a (turn_id, seq) clash raises: no duplicates)."""
    if not events:
        return
    with tenant_session(tenant_id, engine=engine) as s:
        insert_events(s.connection(), tenant_id, conversation_id, turn_id, events)


def insert_events(
    conn: Connection, tenant_id: str, conversation_id: str, turn_id: str, events: list[dict[str, Any]]
) -> None:
    """The same insert on the caller's connection (the worker commits a turn in one transaction)."""
    if events:
        rows = [_row(tenant_id, conversation_id, turn_id, e, n) for n, e in enumerate(events, start=1)]
        conn.execute(sa.insert(EVENTS), rows)


def turn_events(engine: Engine, tenant_id: str, turn_id: str) -> list[dict[str, Any]]:
    """The turn's events in order, shaped like ``TurnResult.events``."""
    e = EVENTS.c
    q = (
        sa.select(e.seq, e.type, e.payload)
        .where(e.tenant_id == tenant_id, e.turn_id == turn_id)
        .order_by(e.seq)
    )
    with tenant_session(tenant_id, engine=engine) as s:
        rows = s.connection().execute(q).all()
    return [{**(r.payload or {}), "seq": r.seq, "type": r.type} for r in rows]


def conversation_turns(engine: Engine, tenant_id: str, conversation_id: str) -> list[str]:
    """Turn ids of a conversation, oldest first."""
    e = EVENTS.c
    q = (
        sa.select(e.turn_id, sa.func.min(e.id).label("first"))
        .where(e.tenant_id == tenant_id, e.conversation_id == conversation_id)
        .group_by(e.turn_id)
        .order_by("first")
    )
    with tenant_session(tenant_id, engine=engine) as s:
        return [r.turn_id for r in s.connection().execute(q)]


def trace(turn_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Pure: the turn's trace from its events (the same derivations as ``runtime.engine``)."""
    of = {t: [ev for ev in events if ev["type"] == t] for t in {ev["type"] for ev in events}}

    def payloads(type_: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in ev.items() if k not in ("seq", "type", "ts")} for ev in of.get(type_, [])]

    llm_calls = payloads("llm_call")
    routes = payloads("route_decided")
    finished = of.get("turn_finished", [])
    return {
        "turn_id": turn_id,
        "path": [str(ev["node"]) for ev in of.get("node_started", [])],
        "replies": [str(ev["text"]) for ev in of.get("reply", [])],
        "route": routes[0] if routes else None,
        "llm_calls": llm_calls,
        "tool_calls": payloads("tool_called"),
        "usage": {
            "llm_calls": len(llm_calls),
            "prompt_tokens": sum(c.get("prompt_tokens", 0) for c in llm_calls),
            "completion_tokens": sum(c.get("completion_tokens", 0) for c in llm_calls),
            "cost_usd": round(sum(c.get("cost_usd", 0.0) for c in llm_calls), 8),
        },
        "failed": bool(of.get("turn_failed")) or any(ev.get("failed") for ev in finished),
    }


def replay_turn(engine: Engine, tenant_id: str, turn_id: str) -> dict[str, Any]:
    """Rebuild a stored turn's trace from its events only."""
    return trace(turn_id, turn_events(engine, tenant_id, turn_id))


def delete_conversation(engine: Engine, tenant_id: str, conversation_id: str) -> dict[str, int]:
    """Erase a conversation's events and checkpoints (one transaction); rows deleted per table."""
    with tenant_session(tenant_id, engine=engine) as s:
        conn = s.connection()
        counts = {}
        for table, column in ((EVENTS, "conversation_id"), (WRITES, "thread_id"), (CHECKPOINTS, "thread_id")):
            done = conn.execute(
                sa.delete(table).where(table.c.tenant_id == tenant_id, table.c[column] == conversation_id)
            )
            counts[table.name] = done.rowcount
    return counts


def purge_older_than(engine: Engine, tenant_id: str, cutoff: datetime) -> dict[str, int]:
    """Retention: delete the tenant's events and checkpoints created before ``cutoff``."""
    c, w = CHECKPOINTS.c, WRITES.c
    old_checkpoint = (
        sa.select(sa.literal(1))
        .where(
            c.tenant_id == w.tenant_id,
            c.thread_id == w.thread_id,
            c.checkpoint_ns == w.checkpoint_ns,
            c.checkpoint_id == w.checkpoint_id,
            c.created_at < cutoff,
        )
        .exists()
    )
    with tenant_session(tenant_id, engine=engine) as s:
        conn = s.connection()
        events = conn.execute(
            sa.delete(EVENTS).where(EVENTS.c.tenant_id == tenant_id, EVENTS.c.created_at < cutoff)
        )
        # Writes first: they are found through the checkpoints they belong to.
        writes = conn.execute(sa.delete(WRITES).where(w.tenant_id == tenant_id, old_checkpoint))
        checkpoints = conn.execute(
            sa.delete(CHECKPOINTS).where(c.tenant_id == tenant_id, c.created_at < cutoff)
        )
    return {
        "run_events": events.rowcount,
        "checkpoint_writes": writes.rowcount,
        "checkpoints": checkpoints.rowcount,
    }
