"""The chat API: conversations, messages (wait, 202, or an SSE stream), turns, feedback, handoffs.

A message is recorded and enqueued here and answered by a worker (runtime.jobs); this process
only waits for the turn's ``done`` event on Redis pub/sub (it never runs the turn itself). The
subscription is opened BEFORE the turn is enqueued, so a fast worker cannot finish unseen.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from app.api_deps import PREFIX as V1
from app.api_deps import Unavailable, require
from core.db import new_id
from runtime import jobs
from runtime import service as svc
from runtime.streams import Subscription
from tenants.principal import Principal
from tenants.tokens import ADMIN, CHAT, WORKFLOWS_WRITE

router = APIRouter()

Chatter = Annotated[Principal, Depends(require(CHAT))]
Admin = Annotated[Principal, Depends(require(ADMIN))]
Id = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

#: How long ``POST .../messages`` waits for the reply before answering 202 (``?wait=`` overrides).
DEFAULT_WAIT_S = 10.0
MAX_WAIT_S = 30.0
#: An SSE stream ends with an ``error`` event (code ``timeout``) after this long without ``done``.
STREAM_TIMEOUT_S = jobs.JOB_TIMEOUT_S * (jobs.RETRIES + 1) + 30
KEEPALIVE_S = 15.0


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationIn(Body):
    workflow_id: StrictStr = Field(min_length=1, max_length=100)
    channel: Literal["api", "widget", "test"] = "api"
    #: Talk to the draft instead of the published version (the editor's test panel; needs write).
    draft: StrictBool = False


class MessageIn(Body):
    text: StrictStr = Field(min_length=1, max_length=svc.MAX_TEXT_CHARS)


class FeedbackIn(Body):
    score: Literal[1, -1]


class ReleaseIn(Body):
    close: StrictBool = False


async def _subscribe(turn_id: str, *, live: bool) -> Subscription:
    """Listen to a turn's events; Redis unreachable -> 503 before anything is stored."""
    try:
        return await Subscription(turn_id, live=live).__aenter__()
    except Exception as exc:
        raise Unavailable("queue_unavailable", "the message queue is unreachable; retry shortly") from exc


def _urls(turn_id: str) -> dict[str, str]:
    return {"turn_url": f"{V1}/turns/{turn_id}", "stream_url": f"{V1}/turns/{turn_id}/stream"}


@router.post(f"{V1}/conversations", status_code=201)
def create_conversation(body: ConversationIn, p: Chatter) -> dict[str, Any]:
    """Start a conversation with a published workflow (``draft: true`` tests the draft)."""
    if body.draft:
        p.require(WORKFLOWS_WRITE)
    conv = svc.start_conversation(
        p.tenant_id, body.workflow_id, channel=body.channel, draft=body.draft, created_by=p.actor_id
    )
    return svc.conversation_out(conv)


@router.get(f"{V1}/conversations/{{conversation_id}}")
def get_conversation(conversation_id: Id, p: Chatter) -> dict[str, Any]:
    """The transcript: every message with its reply, intent, route and path."""
    return svc.transcript(p.tenant_id, conversation_id)


@router.delete(f"{V1}/conversations/{{conversation_id}}")
def delete_conversation(conversation_id: Id, p: Admin) -> dict[str, Any]:
    """Erase the conversation: messages, events and checkpoints (counts of rows deleted)."""
    return {"deleted": svc.delete_conversation(p.tenant_id, conversation_id)}


@router.post(f"{V1}/conversations/{{conversation_id}}/messages", response_model=None)
async def post_message(
    conversation_id: Id,
    body: MessageIn,
    p: Chatter,
    stream: bool = False,
    wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT_S)] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=svc.MAX_IDEMPOTENCY_KEY_CHARS)
    ] = None,
) -> Response:
    """Post a message: wait for the reply (200), or 202 after ``wait`` seconds, or stream SSE."""
    sub = await _subscribe(new_id(), live=stream)
    try:
        posted = await run_in_threadpool(
            svc.post_message,
            p.tenant_id,
            conversation_id,
            body.text,
            idempotency_key=idempotency_key,
            turn_id=sub.turn_id,
        )
        turn = posted.turn
        if turn.id != sub.turn_id:  # an idempotent replay: listen to the turn made the first time
            await sub.__aexit__()
            sub = await _subscribe(turn.id, live=stream)
        if turn.status == svc.QUEUED:
            try:
                await run_in_threadpool(
                    jobs.enqueue_turn, p.tenant_id, turn.id, posted.queue, None, turn.conversation_id
                )
            except Exception as exc:
                raise Unavailable(
                    "queue_unavailable",
                    "the message is saved but could not be queued; retry with the same Idempotency-Key",
                    turn_id=turn.id,
                ) from exc
    except BaseException:
        await sub.__aexit__()
        raise
    headers = {"Idempotent-Replayed": "true"} if not posted.created else {}
    if stream:
        return StreamingResponse(
            _sse(sub, p.tenant_id, turn.id),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        timeout = DEFAULT_WAIT_S if wait is None else wait
        out = await _wait_done(sub, p.tenant_id, turn.id, timeout, check_first=not posted.created)
    finally:
        await sub.__aexit__()
    if out is None:
        return JSONResponse(
            {"turn_id": turn.id, "status": svc.QUEUED, **_urls(turn.id)}, status_code=202, headers=headers
        )
    return JSONResponse({**out, **_urls(turn.id)}, headers=headers)


async def _turn_if_finished(tenant_id: str, turn_id: str) -> dict[str, Any] | None:
    turn = await run_in_threadpool(svc.get_turn, tenant_id, turn_id)
    return None if turn.status == svc.QUEUED else svc.turn_out(turn)


async def _wait_done(
    sub: Subscription, tenant_id: str, turn_id: str, timeout: float, *, check_first: bool = True
) -> dict[str, Any] | None:
    # A turn made by this request cannot be done before it was enqueued: no need to look first.
    if check_first and (done := await _turn_if_finished(tenant_id, turn_id)) is not None:
        return done
    async for event, data in sub.events(time.monotonic() + timeout):
        if event == "done":
            return data
    # The last word is the database's: a ``done`` can be missed if Redis dropped the message.
    return await _turn_if_finished(tenant_id, turn_id)


def _frame(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


async def _sse(sub: Subscription, tenant_id: str, turn_id: str) -> AsyncIterator[str]:
    try:
        if (done := await _turn_if_finished(tenant_id, turn_id)) is not None:
            yield _frame("done", done)
            return
        deadline = time.monotonic() + STREAM_TIMEOUT_S
        last_sent = last_checked = time.monotonic()
        while (now := time.monotonic()) < deadline:
            item = await sub.next(min(1.0, deadline - now))
            now = time.monotonic()
            if item is not None:
                event, data = item
                yield _frame(event, data)
                last_sent = now
                if event == "done":
                    return
                continue
            if now - last_checked > 5:
                last_checked = now
                if (done := await _turn_if_finished(tenant_id, turn_id)) is not None:
                    yield _frame("done", done)
                    return
            if now - last_sent > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = now
        yield _frame("error", {"code": "timeout", "message": "no reply in time; poll the turn URL"})
    finally:
        await sub.__aexit__()


@router.get(f"{V1}/turns/{{turn_id}}")
def get_turn(turn_id: Id, p: Chatter) -> dict[str, Any]:
    """One turn: status (queued / done / failed), reply, intent, route, path, usage."""
    return {**svc.turn_out(svc.get_turn(p.tenant_id, turn_id)), **_urls(turn_id)}


@router.get(f"{V1}/turns/{{turn_id}}/stream", response_model=None)
async def stream_turn(turn_id: Id, p: Chatter) -> StreamingResponse:
    """SSE: the turn's ``token``/``node``/``route`` events until ``done`` (at once if finished)."""
    sub = await _subscribe(turn_id, live=True)
    try:
        await run_in_threadpool(svc.get_turn, p.tenant_id, turn_id)  # 404 for another tenant's turn
    except BaseException:
        await sub.__aexit__()
        raise
    return StreamingResponse(
        _sse(sub, p.tenant_id, turn_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(f"{V1}/turns/{{turn_id}}/trace")
def turn_trace(turn_id: Id, p: Chatter) -> dict[str, Any]:
    """The turn rebuilt from the event store: path, replies, route, LLM and tool calls, events."""
    from core.db import get_engine
    from runtime.events import trace, turn_events

    svc.get_turn(p.tenant_id, turn_id)
    events = turn_events(get_engine(), p.tenant_id, turn_id)
    return {**trace(turn_id, events), "events": events}


@router.post(f"{V1}/turns/{{turn_id}}/feedback")
def turn_feedback(turn_id: Id, body: FeedbackIn, p: Chatter) -> dict[str, Any]:
    """Thumbs up (1) or down (-1); the first one per turn teaches the router's bandit."""
    turn, first = svc.feedback(p.tenant_id, turn_id, body.score)
    learned = False
    if first and turn.route and turn.intent and turn.route.get("tier"):
        from runtime.bandit import record_feedback

        record_feedback(p.tenant_id, turn.intent, str(turn.route["tier"]), 1.0 if body.score > 0 else 0.0)
        learned = True
    return {"turn_id": turn.id, "feedback": turn.feedback, "learned": learned}


@router.get(f"{V1}/handoffs")
def list_handoffs(p: Chatter, limit: Annotated[StrictInt, Query(ge=1, le=500)] = 200) -> dict[str, Any]:
    """The handoff queue: conversations waiting for a human (the bot is silent on them)."""
    return {"handoffs": svc.handoffs(p.tenant_id, limit=limit)}


@router.post(f"{V1}/handoffs/{{conversation_id}}/release")
def release_handoff(conversation_id: Id, body: ReleaseIn, p: Chatter) -> dict[str, Any]:
    """A human is done with the conversation: the bot answers again (or ``close: true``)."""
    return svc.conversation_out(svc.release_handoff(p.tenant_id, conversation_id, close=body.close))
