"""The event store on SQLite and PostgreSQL (app role, RLS live): append, read, replay, erase, purge."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy.engine import Engine

from builder.yaml_io import load
from core.db import tenant_session
from core.settings import ROOT
from runtime.checkpointer import CHECKPOINTS, SqlCheckpointer
from runtime.demo_api import serve_in_thread
from runtime.engine import Engine as FlowEngine
from runtime.events import (
    EVENTS,
    append_events,
    conversation_turns,
    delete_conversation,
    purge_older_than,
    replay_turn,
    turn_events,
)
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.runtime.support import demo_engine

WORKFLOWS = ROOT / "workflows"
A, B = "tenant_a", "tenant_b"


@pytest.fixture(scope="module")
def demo_api() -> Iterator[str]:
    url, stop = serve_in_thread("127.0.0.1", 0)
    yield url
    stop()


def flow_engine(demo: str, db: Engine, tenant: str) -> FlowEngine:
    """A fresh Engine as a worker would build it: nothing shared but the database."""
    return demo_engine(demo, checkpointer=SqlCheckpointer(db, tenant))


def events_of_a_turn(ts: float) -> list[dict]:
    return [
        {"seq": 1, "type": "turn_started", "ts": ts, "workflow": "w"},
        {"seq": 2, "type": "node_started", "ts": ts, "node": "start", "node_type": "start"},
        {"seq": 3, "type": "node_started", "ts": ts, "node": "understand", "node_type": "classify"},
        {"seq": 4, "type": "llm_call", "ts": ts, "node": "understand",
         "prompt_tokens": 7, "completion_tokens": 2, "cost_usd": 0.001},
        {"seq": 5, "type": "route_decided", "ts": ts, "node": "understand", "intent": "faq"},
        {"seq": 6, "type": "tool_called", "ts": ts, "node": "lookup", "status": 200},
        {"seq": 7, "type": "reply", "ts": ts, "node": "answer", "text": "Hello"},
        {"seq": 8, "type": "turn_finished", "ts": ts, "waiting": False, "failed": False},
    ]  # fmt: skip


def test_append_read_and_replay_round_trip(db_engine):  # noqa: F811
    turn, cid = uuid.uuid4().hex, uuid.uuid4().hex
    events = events_of_a_turn(time.time())
    append_events(db_engine, A, cid, turn, events)
    assert turn_events(db_engine, A, turn) == events
    assert conversation_turns(db_engine, A, cid) == [turn]
    trace = replay_turn(db_engine, A, turn)
    assert trace == {
        "turn_id": turn,
        "path": ["start", "understand"],
        "replies": ["Hello"],
        "route": {"node": "understand", "intent": "faq"},
        "llm_calls": [{"node": "understand", "prompt_tokens": 7, "completion_tokens": 2, "cost_usd": 0.001}],
        "tool_calls": [{"node": "lookup", "status": 200}],
        "usage": {"llm_calls": 1, "prompt_tokens": 7, "completion_tokens": 2, "cost_usd": 0.001},
        "failed": False,
    }
    # Another tenant sees none of it.
    assert turn_events(db_engine, B, turn) == []
    assert replay_turn(db_engine, B, turn)["path"] == []


def test_a_turn_is_appended_whole_or_not_at_all(db_engine):  # noqa: F811
    turn, cid = uuid.uuid4().hex, uuid.uuid4().hex
    events = events_of_a_turn(time.time())
    append_events(db_engine, A, cid, turn, events)
    # The same turn again (a retried job) is refused by (turn_id, seq) and adds nothing.
    with pytest.raises(sa.exc.IntegrityError):
        append_events(db_engine, A, cid, turn, [{"seq": 9, "type": "extra"}, *events])
    assert len(turn_events(db_engine, A, turn)) == len(events)


def test_an_engine_turn_stored_and_replayed_gives_the_same_path_and_reply(db_engine, demo_api):  # noqa: F811
    httpx.post(f"{demo_api}/_control", json={"reset": True}).raise_for_status()
    wf = load((WORKFLOWS / "customer_support.yaml").read_text()).workflow
    cid = uuid.uuid4().hex
    engine = flow_engine(demo_api, db_engine, A)
    for text in ("my package hasn't arrived", "it's 55120"):
        r = engine.run_turn(wf, cid, text, tenant_id=A)
        append_events(db_engine, A, cid, r.turn_id, r.events)
        trace = replay_turn(db_engine, A, r.turn_id)
        assert trace["path"] == r.path
        assert "\n\n".join(trace["replies"]) == r.reply
        assert trace["route"] == r.route
        assert trace["usage"] == r.usage
        assert trace["failed"] is (r.error is not None)
        assert turn_events(db_engine, A, r.turn_id) == r.events
    assert len(conversation_turns(db_engine, A, cid)) == 2
    assert "55120" in trace["replies"][-1]


def test_delete_conversation_erases_its_events_only(db_engine):  # noqa: F811
    keep, gone = uuid.uuid4().hex, uuid.uuid4().hex
    now = time.time()
    append_events(db_engine, A, keep, "t-keep", events_of_a_turn(now))
    append_events(db_engine, A, gone, "t-gone", events_of_a_turn(now))
    append_events(db_engine, B, gone, "t-b", events_of_a_turn(now))
    assert delete_conversation(db_engine, A, gone)["run_events"] == 8
    assert turn_events(db_engine, A, "t-gone") == []
    assert len(turn_events(db_engine, A, "t-keep")) == 8
    assert len(turn_events(db_engine, B, "t-b")) == 8  # same conversation id, other tenant


def test_purge_older_than_the_cutoff(db_engine):  # noqa: F811
    now = datetime.now(UTC)
    old, new = (now - timedelta(days=40)).timestamp(), now.timestamp()
    cid = uuid.uuid4().hex
    append_events(db_engine, A, cid, "t-old", events_of_a_turn(old))
    append_events(db_engine, A, cid, "t-new", events_of_a_turn(new))
    append_events(db_engine, B, cid, "t-old-b", events_of_a_turn(old))
    # An old checkpoint with a pending write, and a recent one.
    saver = SqlCheckpointer(db_engine, A)
    base = {"configurable": {"thread_id": cid, "checkpoint_ns": ""}}
    c1 = saver.put(base, {**empty_checkpoint(), "id": "1f0-old"}, {}, {})
    saver.put_writes(c1, [("x", 1)], task_id="t")
    c2 = saver.put(c1, {**empty_checkpoint(), "id": "1f1-new"}, {}, {})
    with tenant_session(A, engine=db_engine) as s:
        s.connection().execute(
            sa.update(CHECKPOINTS)
            .where(CHECKPOINTS.c.checkpoint_id == "1f0-old")
            .values(created_at=now - timedelta(days=40))
        )

    counts = purge_older_than(db_engine, A, now - timedelta(days=30))
    assert counts == {"run_events": 8, "checkpoint_writes": 1, "checkpoints": 1}
    assert turn_events(db_engine, A, "t-old") == []
    assert len(turn_events(db_engine, A, "t-new")) == 8
    assert len(turn_events(db_engine, B, "t-old-b")) == 8  # another tenant's retention is its own
    assert saver.get_tuple(c1) is None
    latest = saver.get_tuple(base)
    assert latest is not None and latest.config == c2
    with tenant_session(A, engine=db_engine) as s:
        left = s.connection().execute(sa.select(sa.func.count()).select_from(EVENTS)).scalar_one()
    # RLS hides tenant B's 8 rows on PostgreSQL; SQLite has no RLS (the services filter).
    assert left == (8 if db_engine.dialect.name == "postgresql" else 16)
