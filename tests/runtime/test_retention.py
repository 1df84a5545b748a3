"""Retention: each plan's window purges events and checkpoints, run by the workers on a schedule.

A free team keeps 7 days, a business team 365: rows 30 days old go for the first and stay for the
second; fresh rows stay for both. The scheduled path is the real worker loop with a tiny interval.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
import sqlalchemy as sa
from langgraph.checkpoint.base import empty_checkpoint

from core.db import get_engine, tenant_session
from core.redis import get_redis
from runtime import retention, worker
from runtime.checkpointer import CHECKPOINTS, SqlCheckpointer
from runtime.events import append_events, turn_events
from runtime.service import purge_expired
from tests.app.conftest import Api, client, engine, memory_limiter, tenant  # noqa: F401
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.queue_fixtures import QueueBackend, eventually, queue_backend  # noqa: F401

OLD_DAYS = 30


@dataclass
class Seeded:
    tenant_id: str
    conversation_id: str
    saver: SqlCheckpointer
    old: dict
    new: dict


def seed(tenant_id: str) -> Seeded:
    """An old and a fresh turn's events, an old and a fresh checkpoint (with a pending write)."""
    now = datetime.now(UTC)
    cid = uuid.uuid4().hex
    for turn, age in (("old", OLD_DAYS), ("new", 0)):
        ts = (now - timedelta(days=age)).timestamp()
        append_events(get_engine(), tenant_id, cid, f"{cid}-{turn}", [{"seq": 1, "type": "x", "ts": ts}])
    saver = SqlCheckpointer(get_engine(), tenant_id)
    base = {"configurable": {"thread_id": cid, "checkpoint_ns": ""}}
    c1 = saver.put(base, {**empty_checkpoint(), "id": "1f0-old"}, {}, {})
    saver.put_writes(c1, [("x", 1)], task_id="t")
    c2 = saver.put(c1, {**empty_checkpoint(), "id": "1f1-new"}, {}, {})
    with tenant_session(tenant_id) as s:
        s.connection().execute(
            sa.update(CHECKPOINTS)
            .where(
                CHECKPOINTS.c.tenant_id == tenant_id,
                CHECKPOINTS.c.thread_id == cid,
                CHECKPOINTS.c.checkpoint_id == "1f0-old",
            )
            .values(created_at=now - timedelta(days=OLD_DAYS))
        )
    return Seeded(tenant_id, cid, saver, c1, c2)


def state(x: Seeded) -> tuple[int, int, bool, bool]:
    """(old events, new events, old checkpoint present, new checkpoint present)."""
    return (
        len(turn_events(get_engine(), x.tenant_id, f"{x.conversation_id}-old")),
        len(turn_events(get_engine(), x.tenant_id, f"{x.conversation_id}-new")),
        x.saver.get_tuple(x.old) is not None,
        x.saver.get_tuple(x.new) is not None,
    )


def test_purge_expired_follows_each_plans_retention(tenant: Callable[..., Api]):  # noqa: F811
    free, business = tenant("Free", plan="free"), tenant("Big", plan="business")
    f, b = seed(free.tenant_id), seed(business.tenant_id)
    counts = purge_expired()
    assert counts[free.tenant_id] == {"run_events": 1, "checkpoint_writes": 1, "checkpoints": 1}
    assert counts[business.tenant_id] == {"run_events": 0, "checkpoint_writes": 0, "checkpoints": 0}
    assert state(f) == (0, 1, False, True)
    assert state(b) == (1, 1, True, True)  # other tenant untouched


def test_purge_runs_at_most_once_per_interval_across_workers(tenant: Callable[..., Api]):  # noqa: F811
    free = tenant("Free", plan="free")
    redis = fakeredis.FakeRedis()
    assert retention.purge_if_due(redis, 3600) is not None
    seeded = seed(free.tenant_id)
    assert retention.purge_if_due(redis, 3600) is None  # another worker ran it within the hour
    assert state(seeded) == (1, 1, True, True)


def test_workers_run_retention_on_schedule(
    tenant: Callable[..., Api],  # noqa: F811
    queue_backend: QueueBackend,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(worker, "RETENTION_INTERVAL_S", 0.2)
    free = tenant("Free", plan="free")
    queue_backend.start_worker()
    seeded = seed(free.tenant_id)
    get_redis().delete(retention.LOCK_KEY)  # a run from before the seed held the lock
    eventually(lambda: state(seeded) == (0, 1, False, True), timeout=20)
    # ...and again later: the schedule repeats (a second batch of old rows goes too).
    again = seed(free.tenant_id)
    eventually(lambda: state(again) == (0, 1, False, True), timeout=20)
