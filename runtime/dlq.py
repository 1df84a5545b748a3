"""Dead letters: turn jobs that exhausted their retries, in RQ's ``FailedJobRegistry``.

When a turn's last attempt fails, ``runtime.jobs.on_turn_failure`` has already apologised to the
user and put the conversation in the handoff queue; the job stays in the failed registry of its
queue (for ``jobs.FAILURE_TTL_S``) with its traceback. This module lists those jobs, shows one
with its turn and events, requeues one after the cause is fixed, or drops one.

Scoping: ``tenant_id=None`` is the operator (``flowdesk dlq``: every tenant's jobs, the tenant id
comes from the job's arguments); a tenant id (the admin page) sees only that tenant's jobs, and
another tenant's job is "not found", never "forbidden".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from core.db import get_engine, tenant_session
from core.errors import Conflict, NotFound
from core.redis import get_redis, is_fake
from core.settings import Settings, get_settings
from runtime import events as event_store
from runtime import jobs
from runtime import service as svc
from runtime.models import Conversation, Turn

#: A handoff the runtime made itself (``TurnRunner.fail``); a retry takes it back.
RUNTIME_HANDOFF = "runtime_error"
MAX_LIST = 500


@dataclass(frozen=True)
class DeadLetter:
    job_id: str
    turn_id: str
    tenant_id: str
    queue: str
    failed_at: datetime | None
    #: The exception's last line (``LookupError: workflow 'x' no longer exists``).
    error: str
    #: The full traceback RQ recorded.
    exc_info: str

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out["failed_at"] = self.failed_at.isoformat() if self.failed_at else None
        if not full:
            out.pop("exc_info")
        return out


def _registries(redis: Any) -> list[FailedJobRegistry]:
    return [FailedJobRegistry(q, connection=redis, serializer=JSONSerializer) for q in jobs.queue_names()]


def _summary(exc_info: str) -> str:
    lines = [ln.strip() for ln in exc_info.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def _exc_info(job: Job) -> str:
    result = job.latest_result()
    if result is not None and result.exc_string:
        return str(result.exc_string)
    return str(getattr(job, "_exc_info", "") or "")


def _letter(job: Job, queue: str) -> DeadLetter | None:
    args = list(job.args or [])
    if not job.id.startswith("turn-") or len(args) < 2:
        return None  # not a turn job: someone else's job on our queue names
    exc = _exc_info(job)
    return DeadLetter(
        job_id=job.id,
        turn_id=str(args[0]),
        tenant_id=str(args[1]),
        queue=queue,
        failed_at=job.ended_at,
        error=_summary(exc),
        exc_info=exc,
    )


def list_dead(tenant_id: str | None = None, settings: Settings | None = None) -> list[DeadLetter]:
    """Failed turn jobs of every queue (of one tenant if given), newest failure first."""
    redis = get_redis(settings)
    out: list[DeadLetter] = []
    for registry in _registries(redis):
        ids = registry.get_job_ids(0, MAX_LIST - 1, desc=True)
        for job in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer):
            letter = _letter(job, registry.name) if job is not None else None
            if letter is not None and (tenant_id is None or letter.tenant_id == tenant_id):
                out.append(letter)
    out.sort(key=lambda d: d.failed_at.timestamp() if d.failed_at else 0.0, reverse=True)
    return out


def _find(job_id: str, tenant_id: str | None, redis: Any) -> tuple[DeadLetter, Job, FailedJobRegistry]:
    if not job_id.startswith("turn-"):
        job_id = jobs.job_id(job_id)  # a bare turn id is accepted too
    for registry in _registries(redis):
        if job_id not in registry:
            continue
        try:
            job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        except Exception:  # the job hash expired before its registry entry
            break
        letter = _letter(job, registry.name)
        if letter is not None and (tenant_id is None or letter.tenant_id == tenant_id):
            return letter, job, registry
        break
    raise NotFound("dead_letter_not_found", f"no failed turn job {job_id!r}")


def get(job_id: str, tenant_id: str | None = None, settings: Settings | None = None) -> DeadLetter:
    return _find(job_id, tenant_id, get_redis(settings))[0]


def show(job_id: str, tenant_id: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """The dead letter with its full traceback, its turn row and the turn's events."""
    letter = get(job_id, tenant_id, settings)
    with tenant_session(letter.tenant_id) as s:
        turn = s.get(Turn, letter.turn_id)
        turn_row = svc.turn_out(turn) if turn is not None and turn.tenant_id == letter.tenant_id else None
        conv = s.get(Conversation, turn.conversation_id) if turn_row else None
        conv_row = svc.conversation_out(conv) if conv is not None else None
    events = event_store.turn_events(get_engine(), letter.tenant_id, letter.turn_id) if turn_row else []
    return {**letter.to_dict(full=True), "turn": turn_row, "conversation": conv_row, "events": events}


def _reset_turn(tenant_id: str, turn_id: str) -> None:
    """The failed turn back to ``queued``, its failure events gone, the runtime's handoff undone."""
    t, c = svc.TURNS.c, svc.CONVERSATIONS.c
    with tenant_session(tenant_id) as s:
        turn = s.get(Turn, turn_id)
        if turn is None or turn.tenant_id != tenant_id:
            raise NotFound("turn_not_found", f"the turn {turn_id!r} of this job no longer exists")
        # Still queued: the failure callback could not record the failure (e.g. the database was
        # away); the same reset is then a no-op and the job is simply requeued.
        if turn.status not in (svc.FAILED, svc.QUEUED):
            raise Conflict("turn_not_failed", f"turn {turn_id!r} is {turn.status}, not failed")
        conn = s.connection()
        conn.execute(
            sa.update(svc.TURNS)
            .where(t.id == turn_id, t.tenant_id == tenant_id, t.status == svc.FAILED)
            .values(status=svc.QUEUED, reply=None, error=None, finished_at=None)
        )
        # A failed turn only ever has the events TurnRunner.fail wrote (a run commits its own
        # events with its reply, all or nothing; a queued one has none); the re-run writes
        # seq 1.. again and UNIQUE(turn_id, seq) would refuse it if they stayed.
        e = event_store.EVENTS.c
        conn.execute(sa.delete(event_store.EVENTS).where(e.tenant_id == tenant_id, e.turn_id == turn_id))
        conn.execute(
            sa.update(svc.CONVERSATIONS)
            .where(
                c.id == turn.conversation_id,
                c.tenant_id == tenant_id,
                c.status == svc.WAITING_HUMAN,
                c.handoff_reason.like(f"{RUNTIME_HANDOFF}%"),
            )
            .values(
                status=svc.ACTIVE,
                handoff_reason=None,
                handoff_priority=None,
                handoff_queue=None,
                handoff_at=None,
            )
        )


def retry(job_id: str, tenant_id: str | None = None, settings: Settings | None = None) -> DeadLetter:
    """Answer the turn again: reset it (see ``_reset_turn``), then requeue the same RQ job.

    Fix the cause first: the job gets its full retry budget again and, if it still fails, lands
    here again (and the user gets the apology again).
    """
    settings = settings or get_settings()
    redis = get_redis(settings)
    letter, job, registry = _find(job_id, tenant_id, redis)
    _reset_turn(letter.tenant_id, letter.turn_id)
    job.retries_left = jobs.RETRIES
    job.save()
    if is_fake(redis):
        from runtime.worker import ensure_embedded_worker

        ensure_embedded_worker(settings)
    # The turn is queued in the DB before the job is: if this requeue failed, the worker's
    # requeue_orphans would still find the turn and enqueue it.
    registry.requeue(job)
    return letter


def drop(job_id: str, tenant_id: str | None = None, settings: Settings | None = None) -> DeadLetter:
    """Delete the job for good; the turn stays failed (the user already got the apology)."""
    letter, job, registry = _find(job_id, tenant_id, get_redis(settings))
    registry.remove(job, delete_job=True)
    return letter
