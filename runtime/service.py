"""Conversations and turns: the chat API's service layer (DESIGN.md §5). No HTTP, no Redis waits.

A message becomes a ``turns`` row in one transaction that also checks the idempotency key, the
plan's message limit and the tenant's concurrency cap; the caller then enqueues it
(``runtime.jobs.enqueue_turn``) and the worker fills in the reply. Every function takes the
tenant from the authenticated principal (``tenant_id`` argument), never from the request body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from builder.models import StoredWorkflow
from core.db import new_id, tenant_session, utcnow
from core.errors import Conflict, Invalid, NotFound, ServiceError
from runtime import events as event_store
from runtime.models import Conversation, Turn
from tenants import limits, plans
from tenants.models import Tenant

MAX_TEXT_CHARS = 4000
MAX_IDEMPOTENCY_KEY_CHARS = 200
CHANNELS = ("api", "widget", "test")
QUEUED, DONE, FAILED = "queued", "done", "failed"
ACTIVE, WAITING_HUMAN, CLOSED = "active", "waiting_human", "closed"

TURNS: sa.Table = cast(sa.Table, Turn.__table__)
CONVERSATIONS: sa.Table = cast(sa.Table, Conversation.__table__)
TENANTS: sa.Table = cast(sa.Table, Tenant.__table__)


class TooManyTurns(ServiceError):
    """The tenant already has its plan's number of turns in flight (HTTP 429, retry shortly)."""

    status = 429


@dataclass(frozen=True)
class Posted:
    turn: Turn
    #: False when an Idempotency-Key found the turn a previous, identical request made.
    created: bool
    queue: str


def request_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _conversation(s: Session, tenant_id: str, conversation_id: str) -> Conversation:
    conv = s.get(Conversation, conversation_id) if len(conversation_id) <= 64 else None
    if conv is None or conv.tenant_id != tenant_id:
        raise NotFound("conversation_not_found", f"no conversation {conversation_id!r}")
    return conv


def _workflow(s: Session, tenant_id: str, ref: str) -> StoredWorkflow:
    wf = s.exec(select(StoredWorkflow).where(StoredWorkflow.slug == ref)).first()
    if wf is None and len(ref) <= 32:
        wf = s.get(StoredWorkflow, ref)
    if wf is None or wf.tenant_id != tenant_id:
        raise NotFound("workflow_not_found", f"no workflow {ref!r}")
    return wf


# ---------------------------------------------------------------- conversations


def start_conversation(
    tenant_id: str,
    workflow: str,
    *,
    channel: str = "api",
    draft: bool = False,
    created_by: str | None = None,
) -> Conversation:
    """A new conversation on the workflow's published version (or its draft, for the test panel)."""
    if channel not in CHANNELS:
        raise Invalid("invalid_channel", f"channel must be one of {', '.join(CHANNELS)}")
    with tenant_session(tenant_id) as s:
        wf = _workflow(s, tenant_id, workflow)
        if not draft and wf.published_version is None:
            raise Conflict("workflow_not_published", f"workflow {wf.slug!r} has no published version yet")
        if draft and not wf.draft_valid:
            raise Conflict("workflow_invalid", f"the draft of {wf.slug!r} has errors; fix them to test it")
        conv = Conversation(
            tenant_id=tenant_id,
            workflow_id=wf.id,
            workflow_slug=wf.slug,
            version=None if draft else wf.published_version,
            channel=channel,
            created_by=created_by,
        )
        s.add(conv)
    return conv


def post_message(
    tenant_id: str,
    conversation_id: str,
    text: str,
    *,
    idempotency_key: str | None = None,
    turn_id: str | None = None,
) -> Posted:
    """Record one user message as a queued turn (or find the one this idempotency key made)."""
    if not isinstance(text, str) or not text.strip():
        raise Invalid("empty_message", "the message text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise Invalid("message_too_long", f"a message is at most {MAX_TEXT_CHARS} characters")
    if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS):
        raise Invalid(
            "invalid_idempotency_key", f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} chars"
        )
    digest = request_hash(text)
    try:
        return _post(tenant_id, conversation_id, text, digest, idempotency_key, turn_id or new_id())
    except IntegrityError:
        # A concurrent request with the same key won the insert: answer with its turn.
        if idempotency_key is None:
            raise Conflict(
                "concurrent_message", "another message was posted at the same time; retry"
            ) from None
        return _post(tenant_id, conversation_id, text, digest, idempotency_key, turn_id or new_id())


def _post(
    tenant_id: str, conversation_id: str, text: str, digest: str, key: str | None, turn_id: str
) -> Posted:
    # SQLAlchemy Core, one round trip per step: this runs on every chat message (DESIGN.md §8).
    t, c, tn = TURNS.c, CONVERSATIONS.c, TENANTS.c
    with tenant_session(tenant_id) as s:
        conn = s.connection()
        conv = conn.execute(
            sa.select(c.status, tn.plan)
            .select_from(CONVERSATIONS.join(TENANTS, TENANTS.c.id == c.tenant_id))
            .where(c.id == conversation_id, c.tenant_id == tenant_id)
        ).first()
        if conv is None:
            raise NotFound("conversation_not_found", f"no conversation {conversation_id!r}")
        plan = plans.get_plan(conv.plan)
        if key is not None:
            existing = conn.execute(
                sa.select(TURNS).where(
                    t.tenant_id == tenant_id, t.conversation_id == conversation_id, t.idempotency_key == key
                )
            ).first()
            if existing is not None:
                if existing.request_hash != digest:
                    raise Conflict(
                        "idempotency_key_reused",
                        "this Idempotency-Key was already used for a different message",
                    )
                return Posted(Turn(**existing._mapping), created=False, queue=plan.queue)
        if conv.status == CLOSED:
            raise Conflict("conversation_closed", "this conversation is closed; start a new one")
        now = utcnow()
        counts = conn.execute(
            sa.select(
                sa.func.count().filter(t.created_at >= _month_start(now)),
                sa.func.count().filter(t.status == QUEUED),
            ).where(t.tenant_id == tenant_id)
        ).one()
        decision = limits.check_start_turn(plan, limits.Usage(messages_this_month=int(counts[0])))
        if not decision.allowed:
            from tenants.service import check_plan

            check_plan(decision)
        if int(counts[1]) >= plan.concurrent_turns:
            raise TooManyTurns(
                "too_many_turns",
                f"{counts[1]} messages of your team are still being answered; your {plan.title} plan "
                f"allows {plan.concurrent_turns} at once. Retry in a moment.",
                retry_after_s=1,
            )
        seq = conn.execute(
            sa.update(CONVERSATIONS)
            .where(c.id == conversation_id, c.tenant_id == tenant_id)
            .values(turns=c.turns + 1, updated_at=now)
            .returning(c.turns)
        ).scalar_one()
        values = {
            "id": turn_id,
            "tenant_id": tenant_id,
            "conversation_id": conversation_id,
            "seq": int(seq),
            "idempotency_key": key,
            "request_hash": digest,
            "text": text,
            "status": QUEUED,
            "waiting": False,
            "held": False,
            "created_at": now,
        }
        conn.execute(sa.insert(TURNS).values(**values))
    return Posted(Turn(**values), created=True, queue=plan.queue)


def get_turn(tenant_id: str, turn_id: str) -> Turn:
    with tenant_session(tenant_id) as s:
        turn = s.get(Turn, turn_id) if len(turn_id) <= 64 else None
        if turn is None or turn.tenant_id != tenant_id:
            raise NotFound("turn_not_found", f"no turn {turn_id!r}")
        return turn


def turn_out(turn: Turn) -> dict[str, Any]:
    """The API shape of a turn (also the ``done`` event of the stream)."""
    return {
        "turn_id": turn.id,
        "conversation_id": turn.conversation_id,
        "seq": turn.seq,
        "status": turn.status,
        "text": turn.text,
        "reply": turn.reply,
        "intent": turn.intent,
        "route": turn.route,
        "path": turn.path or [],
        "usage": turn.usage or {},
        "waiting": turn.waiting,
        "held": turn.held,
        "error": turn.error,
        "feedback": turn.feedback,
        "created_at": turn.created_at.isoformat() if turn.created_at else None,
        "finished_at": turn.finished_at.isoformat() if turn.finished_at else None,
    }


def conversation_out(conv: Conversation) -> dict[str, Any]:
    return {
        "id": conv.id,
        "workflow": conv.workflow_slug,
        "version": conv.version,
        "channel": conv.channel,
        "status": conv.status,
        "turns": conv.turns,
        "handoff": (
            {
                "reason": conv.handoff_reason,
                "priority": conv.handoff_priority,
                "queue": conv.handoff_queue,
                "at": conv.handoff_at.isoformat() if conv.handoff_at else None,
            }
            if conv.handoff_at
            else None
        ),
        "created_at": conv.created_at.isoformat(),
        "updated_at": conv.updated_at.isoformat(),
    }


def transcript(tenant_id: str, conversation_id: str) -> dict[str, Any]:
    """The conversation with every turn (message, reply, route), oldest first."""
    with tenant_session(tenant_id) as s:
        conv = _conversation(s, tenant_id, conversation_id)
        turns = s.exec(select(Turn).where(Turn.conversation_id == conv.id).order_by(Turn.seq)).all()
    return {**conversation_out(conv), "messages": [turn_out(t) for t in turns]}


def feedback(tenant_id: str, turn_id: str, score: int) -> tuple[Turn, bool]:
    """Store thumbs up (1) / down (-1); True when this is the turn's first feedback (learn from it)."""
    if score not in (1, -1):
        raise Invalid("invalid_score", "score must be 1 (thumbs up) or -1 (thumbs down)")
    with tenant_session(tenant_id) as s:
        turn = s.get(Turn, turn_id) if len(turn_id) <= 64 else None
        if turn is None or turn.tenant_id != tenant_id:
            raise NotFound("turn_not_found", f"no turn {turn_id!r}")
        if turn.status != DONE:
            raise Conflict("turn_not_answered", "feedback is for answered turns")
        first = turn.feedback is None
        turn.feedback = score
        s.add(turn)
    return turn, first


def handoffs(tenant_id: str, *, status: str = WAITING_HUMAN, limit: int = 200) -> list[dict[str, Any]]:
    """The tenant's handoff queue: conversations waiting for a human, oldest handoff first."""
    with tenant_session(tenant_id) as s:
        convs = s.exec(
            select(Conversation)
            .where(Conversation.status == status, Conversation.handoff_at.is_not(None))  # type: ignore[union-attr]
            .order_by(Conversation.handoff_at)
            .limit(limit)
        ).all()
        out = []
        for c in convs:
            last = s.exec(
                select(Turn).where(Turn.conversation_id == c.id).order_by(Turn.seq.desc()).limit(3)  # type: ignore[attr-defined]
            ).all()
            out.append(
                {
                    **conversation_out(c),
                    "last_messages": [
                        {"seq": t.seq, "text": t.text, "reply": t.reply} for t in reversed(last)
                    ],
                }
            )
    return out


def release_handoff(tenant_id: str, conversation_id: str, *, close: bool = False) -> Conversation:
    """A human is done: the bot answers again (or the conversation closes)."""
    with tenant_session(tenant_id) as s:
        conv = _conversation(s, tenant_id, conversation_id)
        if conv.status != WAITING_HUMAN:
            raise Conflict("not_waiting", "this conversation is not waiting for a human")
        conv.status = CLOSED if close else ACTIVE
        conv.updated_at = utcnow()
        s.add(conv)
    return conv


def delete_conversation(tenant_id: str, conversation_id: str) -> dict[str, int]:
    """Erase the conversation: its messages (turns), events and checkpoints."""
    from core.db import get_engine

    with tenant_session(tenant_id) as s:
        conv = _conversation(s, tenant_id, conversation_id)
        turns = s.connection().execute(
            sa.delete(TURNS).where(TURNS.c.tenant_id == tenant_id, TURNS.c.conversation_id == conv.id)
        )
        s.connection().execute(
            sa.delete(CONVERSATIONS).where(
                CONVERSATIONS.c.tenant_id == tenant_id, CONVERSATIONS.c.id == conv.id
            )
        )
        n_turns = turns.rowcount
    counts = event_store.delete_conversation(get_engine(), tenant_id, conversation_id)
    return {"turns": n_turns, **counts}


def purge_expired(now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Retention: per tenant, delete events and checkpoints older than its plan's retention."""
    from core.db import get_engine, system_session, tenant_plans

    now = now or utcnow()
    with system_session() as s:
        tenants = tenant_plans(s)
    out = {}
    for tid, plan_name in tenants:
        cutoff = now - timedelta(days=plans.get_plan(plan_name).retention_days)
        out[tid] = event_store.purge_older_than(get_engine(), tid, cutoff)
    return out
