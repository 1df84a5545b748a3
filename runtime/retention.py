"""Retention as a scheduled job: the workers purge expired events and checkpoints, one at a time.

``runtime.service.purge_expired`` does the work (each tenant's plan sets its retention). Every
worker's reaper loop calls :func:`purge_if_due`; a Redis ``SET NX`` lock whose TTL is the interval
makes it run at most once per interval across all workers and machines, with no scheduler process.
:func:`expired_counts` is the dry run of ``flowdesk purge``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from core.db import get_engine, system_session, tenant_plans, tenant_session, utcnow
from runtime import events as event_store
from tenants import plans

log = logging.getLogger(__name__)

LOCK_KEY = "flowdesk:retention"


def purge_if_due(redis: Any, interval_s: float) -> dict[str, dict[str, int]] | None:
    """Purge now unless another worker did within ``interval_s``; the counts, or None if not due."""
    if not redis.set(LOCK_KEY, b"1", nx=True, px=max(1, int(interval_s * 1000))):
        return None
    from runtime.service import purge_expired

    counts = purge_expired()
    total = sum(sum(c.values()) for c in counts.values())
    if total:
        log.info("retention: purged %d row(s) across %d tenant(s)", total, len(counts))
    return counts


def expired_counts(now: datetime | None = None) -> dict[str, dict[str, int]]:
    """What ``purge_expired`` would delete now, per tenant (read only)."""
    now = now or utcnow()
    with system_session() as s:
        tenants = tenant_plans(s)
    out = {}
    e, c = event_store.EVENTS, event_store.CHECKPOINTS
    w = event_store.WRITES
    for tid, plan_name in tenants:
        cutoff = now - timedelta(days=plans.get_plan(plan_name).retention_days)
        old_checkpoint = (
            sa.select(sa.literal(1))
            .where(
                c.c.tenant_id == w.c.tenant_id,
                c.c.thread_id == w.c.thread_id,
                c.c.checkpoint_ns == w.c.checkpoint_ns,
                c.c.checkpoint_id == w.c.checkpoint_id,
                c.c.created_at < cutoff,
            )
            .exists()
        )
        queries = {
            "run_events": (e, [e.c.tenant_id == tid, e.c.created_at < cutoff]),
            "checkpoint_writes": (w, [w.c.tenant_id == tid, old_checkpoint]),
            "checkpoints": (c, [c.c.tenant_id == tid, c.c.created_at < cutoff]),
        }
        with tenant_session(tid, engine=get_engine()) as s:
            conn = s.connection()
            out[tid] = {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(t).where(*w_)).scalar_one())
                for name, (t, w_) in queries.items()
            }
    return out
