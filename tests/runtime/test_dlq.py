"""Dead letters end to end: a turn fails every retry -> apology + handoff + RQ failed registry ->
``dlq list/show`` -> ``retry`` after the fix answers it exactly once; ``drop`` removes the job.

Runs on {SQLite, PostgreSQL} x {embedded fakeredis + worker thread, real Redis + TurnWorker}.
The failure is real: the conversation's workflow row is gone (its id no longer resolves), so
``TurnRunner._load`` raises on every attempt; "fixing the cause" puts the id back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from core.db import tenant_session
from core.errors import Conflict, NotFound
from core.redis import get_redis
from runtime import dlq, jobs
from runtime import service as svc
from runtime.engine import APOLOGY
from runtime.events import turn_events
from runtime.models import Conversation
from tests.app.conftest import Api, client, engine, memory_limiter, tenant  # noqa: F401
from tests.app.test_api_chat import GREETER
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.queue_fixtures import QueueBackend, eventually, queue_backend  # noqa: F401


@pytest.fixture
def greeter(tenant: Callable[..., Api], queue_backend: QueueBackend) -> Callable[..., Api]:  # noqa: F811
    def make(name: str = "Acme") -> Api:
        api = tenant(name)
        assert api.push(GREETER).status_code in (200, 201)
        assert api.post("/workflows/greeter/publish").status_code == 200
        return api

    return make


def start(api: Api) -> str:
    r = api.post("/conversations", json={"workflow_id": "greeter"})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def set_workflow_id(api: Api, cid: str, workflow_id: str) -> str:
    """Point the conversation at another workflow id; returns the old one."""
    with tenant_session(api.tenant_id) as s:
        conv = s.get(Conversation, cid)
        assert conv is not None
        old, conv.workflow_id = conv.workflow_id, workflow_id
        s.add(conv)
    return old


def fail_a_turn(api: Api) -> tuple[str, str, str]:
    """A conversation whose first turn exhausts its retries; (conversation, turn, original workflow id)."""
    cid = start(api)
    wf_id = set_workflow_id(api, cid, "gone-workflow")
    r = api.post(f"/conversations/{cid}/messages", json={"text": "hello"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "failed" and out["reply"] == APOLOGY
    # RQ files the job in the failed registry right after the failure callback answered the user.
    eventually(lambda: any(d.turn_id == out["turn_id"] for d in dlq.list_dead()))
    return cid, out["turn_id"], wf_id


def types(tenant_id: str, turn_id: str) -> list[str]:
    from core.db import get_engine

    return [e["type"] for e in turn_events(get_engine(), tenant_id, turn_id)]


def test_a_turn_that_exhausts_its_retries_lands_in_the_dlq_and_retry_answers_it_once(greeter):
    api = greeter()
    cid, turn_id, wf_id = fail_a_turn(api)

    # The user got the apology, the conversation is in the handoff queue with the runtime's reason.
    queue = api.get("/handoffs").json()["handoffs"]
    assert [h["id"] for h in queue] == [cid]
    assert queue[0]["handoff"]["reason"].startswith("runtime_error: LookupError")
    assert types(api.tenant_id, turn_id) == ["turn_failed", "reply", "handoff", "turn_finished"]

    # The job is in the failed registry of its queue, with RQ's traceback.
    redis = get_redis()
    name = jobs.queue_name("high")  # the business plan's queue
    assert jobs.job_id(turn_id) in FailedJobRegistry(name, connection=redis, serializer=JSONSerializer)
    job = Job.fetch(jobs.job_id(turn_id), connection=redis, serializer=JSONSerializer)
    assert job.get_status() == "failed"

    letters = dlq.list_dead()
    assert [(d.job_id, d.turn_id, d.tenant_id, d.queue) for d in letters] == [
        (jobs.job_id(turn_id), turn_id, api.tenant_id, name)
    ]
    assert "no longer exists" in letters[0].error and letters[0].failed_at is not None
    shown = dlq.show(jobs.job_id(turn_id))
    assert "Traceback" in shown["exc_info"] and "LookupError" in shown["exc_info"]
    assert shown["turn"]["status"] == "failed" and shown["turn"]["reply"] == APOLOGY
    assert shown["conversation"]["status"] == "waiting_human"
    assert next(e["type"] for e in shown["events"]) == "turn_failed"
    # The bare turn id works too.
    assert dlq.get(turn_id).job_id == jobs.job_id(turn_id)

    # Tenant scoping: another tenant neither sees nor touches it.
    other = greeter("Other")
    assert dlq.list_dead(other.tenant_id) == []
    assert [d.turn_id for d in dlq.list_dead(api.tenant_id)] == [turn_id]
    with pytest.raises(NotFound):
        dlq.retry(jobs.job_id(turn_id), tenant_id=other.tenant_id)
    with pytest.raises(NotFound):
        dlq.drop(jobs.job_id(turn_id), tenant_id=other.tenant_id)

    # Fix the cause, retry: the turn is answered exactly once and the conversation is the bot's again.
    set_workflow_id(api, cid, wf_id)
    dlq.retry(jobs.job_id(turn_id))
    turn = eventually(lambda: (t := svc.get_turn(api.tenant_id, turn_id)).status == svc.DONE and t)
    assert turn.reply == "What is your name?" and turn.error is None
    evs = types(api.tenant_id, turn_id)
    assert evs.count("turn_finished") == 1 and "turn_failed" not in evs
    assert api.get("/handoffs").json()["handoffs"] == []
    assert dlq.list_dead() == []
    # The conversation goes on from the retried turn.
    r = api.post(f"/conversations/{cid}/messages", json={"text": "I am Ada"})
    assert r.json()["reply"] == "Nice to meet you, Ada!"
    # A retried job that is no longer failed cannot be retried twice.
    with pytest.raises(NotFound):
        dlq.retry(jobs.job_id(turn_id))


def test_retry_without_the_fix_fails_again_and_drop_removes_the_job(greeter):
    api = greeter()
    cid, turn_id, _wf_id = fail_a_turn(api)
    dlq.retry(turn_id)  # the cause is still there: all retries fail again -> back in the DLQ
    eventually(lambda: svc.get_turn(api.tenant_id, turn_id).status == svc.FAILED and dlq.list_dead())
    # The failure was recorded once more, from a clean slate (no duplicate events).
    assert types(api.tenant_id, turn_id) == ["turn_failed", "reply", "handoff", "turn_finished"]
    assert [h["id"] for h in api.get("/handoffs").json()["handoffs"]] == [cid]

    dropped = dlq.drop(jobs.job_id(turn_id))
    assert dropped.turn_id == turn_id
    assert dlq.list_dead() == []
    assert not Job.exists(jobs.job_id(turn_id), connection=get_redis())
    assert svc.get_turn(api.tenant_id, turn_id).status == svc.FAILED  # the turn stays failed
    with pytest.raises(NotFound):
        dlq.show(jobs.job_id(turn_id))


def test_retry_refuses_an_answered_turn_and_requeues_one_whose_failure_was_not_recorded(greeter):
    api = greeter()
    cid, turn_id, wf_id = fail_a_turn(api)

    def set_status(status: str) -> None:
        with tenant_session(api.tenant_id) as s:
            s.connection().execute(
                sa.update(svc.TURNS).where(svc.TURNS.c.id == turn_id).values(status=status)
            )

    set_status(svc.DONE)  # someone answered it by hand meanwhile
    with pytest.raises(Conflict) as err:
        dlq.retry(turn_id)
    assert err.value.code == "turn_not_failed"
    assert [d.turn_id for d in dlq.list_dead()] == [turn_id]  # still there to drop

    # The failure callback could not record the failure (the turn is still queued): retry requeues.
    set_status(svc.QUEUED)
    set_workflow_id(api, cid, wf_id)
    dlq.retry(turn_id)
    turn = eventually(lambda: (t := svc.get_turn(api.tenant_id, turn_id)).status == svc.DONE and t)
    assert turn.reply == "What is your name?"
