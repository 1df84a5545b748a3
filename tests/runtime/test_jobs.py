"""Durable turns: atomic commit, order within a conversation, and a worker SIGKILLed mid-turn.

Runs on SQLite and PostgreSQL (app role: RLS live) with the real queue (embedded fakeredis or
the real Redis). The crash test starts real ``flowdesk worker`` processes and kills one with
SIGKILL while its turn is inside a side effect.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from builder import service as wfs
from core.db import tenant_session
from core.settings import ROOT
from runtime import jobs
from runtime import service as svc
from runtime.events import EVENTS
from runtime.models import CheckpointRow
from tenants import service as tenants
from tests.db_fixtures import PgDatabase, db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.queue_fixtures import GREETER, QUEUE_REDIS_URL, QueueBackend, eventually, queue_backend  # noqa: F401

EFFECT = """\
version: 1
id: effect
name: One side effect
nodes:
  - id: start
    type: start
  - id: call
    type: http_request
    config:
      method: POST
      url: ${config:EFFECT_API}/effect
      body: {message: '{{ message }}'}
      timeout_s: 20
      retries: 0
  - id: done
    type: reply
    config:
      text: Effect {{ call.body.n }} done.
edges:
  - {from: start, to: call}
  - {from: call, to: done}
"""


def make_tenant(plan: str = "business") -> str:
    t, _owner = tenants.create_tenant(
        f"T {uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:8]}@example.com", plan=plan
    )
    return t.id


def publish(tenant_id: str, text: str) -> None:
    with tenant_session(tenant_id) as s:
        wfs.save_draft(s, tenant_id=tenant_id, yaml_text=text, author="test")
        wfs.publish(s, tenant_id=tenant_id, slug=_slug(text), author="test")


def _slug(text: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("id:"))


def post(tenant_id: str, cid: str, text: str, *, enqueue: bool = True) -> str:
    posted = svc.post_message(tenant_id, cid, text)
    if enqueue:
        jobs.enqueue_turn(tenant_id, posted.turn.id, posted.queue)
    return posted.turn.id


def finished(tenant_id: str, turn_id: str) -> Any:
    turn = svc.get_turn(tenant_id, turn_id)
    return turn if turn.status != svc.QUEUED else None


def event_types(tenant_id: str, turn_id: str) -> list[str]:
    with tenant_session(tenant_id) as s:
        rows = s.connection().execute(
            sa.select(EVENTS.c.type).where(EVENTS.c.turn_id == turn_id).order_by(EVENTS.c.seq)
        )
        return [r.type for r in rows]


@pytest.fixture
def db(db_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:  # noqa: F811
    monkeypatch.setattr("core.db._engine", db_engine)
    return db_engine


# ---------------------------------------------------------------- atomic commit


def test_a_turn_that_fails_to_commit_leaves_no_trace_and_reruns_cleanly(db, monkeypatch):
    """Checkpoint, events and reply go in one transaction: a failure there commits none of them."""
    from core.redis import reset_fake_redis

    monkeypatch.delenv("REDIS_URL", raising=False)
    reset_fake_redis()
    tid = make_tenant()
    publish(tid, GREETER)
    cid = svc.start_conversation(tid, "greeter").id
    first = post(tid, cid, "hello", enqueue=False)
    runner = jobs.TurnRunner(db=db)

    def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(jobs, "insert_events", broken)
    with pytest.raises(RuntimeError):
        runner.run(tid, first)
    assert svc.get_turn(tid, first).status == svc.QUEUED
    assert event_types(tid, first) == []
    with tenant_session(tid) as s:
        assert s.connection().execute(sa.select(sa.func.count()).select_from(CheckpointRow)).scalar() == 0

    monkeypatch.undo()
    monkeypatch.setattr("core.db._engine", db)
    runner.run(tid, first)
    turn = svc.get_turn(tid, first)
    assert (turn.status, turn.reply, turn.waiting) == (svc.DONE, "What is your name?", True)
    assert event_types(tid, first).count("turn_finished") == 1
    # The conversation continues from the committed checkpoint, not from the failed attempt.
    second = post(tid, cid, "I am Ada", enqueue=False)
    runner.run(tid, second)
    assert svc.get_turn(tid, second).reply == "Nice to meet you, Ada!"
    # A job for an answered turn is a no-op: nothing runs twice.
    assert runner.run(tid, second) == {"turn_id": second, "skipped": "not queued"}
    assert event_types(tid, second).count("turn_finished") == 1


def test_turns_of_a_conversation_run_in_order_whatever_the_job_order(db, queue_backend):  # noqa: F811
    tid = make_tenant()
    publish(tid, GREETER)
    cid = svc.start_conversation(tid, "greeter").id
    ids = [post(tid, cid, text, enqueue=False) for text in ("hello", "I am Grace", "hello again")]
    for turn_id in reversed(ids):  # the newest job first
        jobs.enqueue_turn(tid, turn_id, "default")
    turns = [eventually(lambda t=t: finished(tid, t)) for t in ids]
    assert [t.reply for t in turns] == [
        "What is your name?",
        "Nice to meet you, Grace!",
        "What is your name?",
    ]
    assert turns[0].finished_at <= turns[1].finished_at <= turns[2].finished_at
    for t in ids:
        assert event_types(tid, t).count("turn_finished") == 1


# ---------------------------------------------------------------- a worker killed mid-turn


class EffectServer:
    """A tool host whose POST /effect takes ``delay`` seconds and dedupes by Idempotency-Key."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests: list[str] = []
        self.effects: dict[str, int] = {}
        self.entered = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                key = self.headers.get("Idempotency-Key", "")
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    outer.requests.append(key)
                outer.entered.set()
                time.sleep(outer.delay)
                with lock:
                    n = outer.effects.setdefault(key, len(outer.effects) + 1)
                body = json.dumps({"n": n}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except BrokenPipeError:  # the worker that asked was SIGKILLed meanwhile
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def effect_server() -> Iterator[EffectServer]:
    server = EffectServer(delay=1.5)
    yield server
    server.close()


def start_worker(pg: PgDatabase, effect_url: str, workers: list[subprocess.Popen[str]]) -> None:
    """Start ``flowdesk worker`` (registered in ``workers`` at once, so cleanup always reaches it)."""
    env = {
        **os.environ,
        "DATABASE_URL": pg.app_url,
        "REDIS_URL": QUEUE_REDIS_URL,
        "FLOWDESK_CONFIG_VALUES": json.dumps({"EFFECT_API": effect_url}),
        "FLOWDESK_SSRF_ALLOW_ORIGINS": json.dumps([effect_url]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    workers.append(proc)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # log lines may come first; the banner follows the preload
        seen.append(line)
        if line.startswith("flowdesk worker"):
            break
    else:
        raise AssertionError(f"the worker exited: {''.join(seen)}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained


@pytest.mark.slow
@pytest.mark.pg
@pytest.mark.redis
def test_a_turn_whose_worker_is_killed_is_finished_once_by_another(
    pg_db: PgDatabase,  # noqa: F811
    pg_engine: Engine,  # noqa: F811
    effect_server: EffectServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    from core.settings import get_settings

    redis.Redis.from_url(QUEUE_REDIS_URL).flushdb()
    monkeypatch.setattr("core.db._engine", pg_engine)
    monkeypatch.setenv("REDIS_URL", QUEUE_REDIS_URL)
    get_settings.cache_clear()
    workers: list[subprocess.Popen[str]] = []
    try:
        tid = make_tenant()
        publish(tid, EFFECT)
        cid = svc.start_conversation(tid, "effect").id
        start_worker(pg_db, effect_server.url, workers)
        turn_id = post(tid, cid, "please do it")
        assert effect_server.entered.wait(30), "the worker never reached the side effect"
        os.kill(workers[0].pid, signal.SIGKILL)  # mid-request: the effect happens, the reply does not
        workers[0].wait(10)
        killed_at = time.monotonic()
        start_worker(pg_db, effect_server.url, workers)
        turn = eventually(lambda: finished(tid, turn_id), timeout=60)
        recovery_s = time.monotonic() - killed_at
        assert turn.status == svc.DONE and turn.reply == "Effect 1 done.", turn
        # Exactly one reply and one turn_finished, though the turn ran twice ...
        assert event_types(tid, turn_id).count("turn_finished") == 1
        assert len(svc.transcript(tid, cid)["messages"]) == 1
        # ... and the side effect happened once: both attempts sent the same Idempotency-Key.
        assert len(effect_server.requests) == 2 and len(set(effect_server.requests)) == 1
        assert effect_server.requests[0] and len(effect_server.effects) == 1
        print(f"recovered {recovery_s:.1f}s after the kill")
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
        redis.Redis.from_url(QUEUE_REDIS_URL).flushdb()
        get_settings.cache_clear()


def test_a_job_popped_by_a_worker_that_died_before_starting_it_is_requeued(db, queue_backend):  # noqa: F811
    """The few ms between a worker's BLPOP and its started-registry entry: a SIGKILL there leaves a
    job that says "queued" but sits in no queue. The sweep finds the turn and enqueues it again."""
    from rq import Queue

    from core.redis import get_redis
    from runtime import worker

    queue_backend.stop_workers()
    tid = make_tenant()
    publish(tid, GREETER)
    cid = svc.start_conversation(tid, "greeter").id
    redis = get_redis()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("runtime.worker.ensure_embedded_worker", lambda settings=None: None)
        turn_id = post(tid, cid, "hello")
        for name in jobs.queue_names():  # what BLPOP did, before the worker was killed
            redis.lrem(Queue(name, connection=redis).key, 0, jobs.job_id(turn_id))
        assert worker.requeue_orphans(older_than_s=60) == 0  # too young to be called lost
        assert worker.requeue_orphans() == 1
        assert worker.requeue_orphans() == 0  # queued again: not lost any more
    queue_backend.start_worker()
    turn = eventually(lambda: finished(tid, turn_id))
    assert turn.reply == "What is your name?"
    assert event_types(tid, turn_id).count("turn_finished") == 1
