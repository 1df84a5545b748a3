"""RQ entry points: ``run_turn(turn_id, tenant_id)`` and what the worker preloads for it.

A turn is committed whole or not at all. The worker runs the graph with the SQL checkpointer in
a turn scope (checkpoints buffered), then writes the checkpoint, the turn's events, the reply and
any handoff in ONE transaction (``_commit``). A worker killed mid-turn therefore leaves the
previous checkpoint and a ``queued`` turn; the reaper (runtime.worker) retries the job within
seconds and the turn runs again from the conversation's last committed state. Tool calls carry
idempotency keys derived from the turn id, so the re-run does not repeat side effects.

Checkpoint durability is ``exit`` (one checkpoint per turn, at its end) because the transaction
above is the durability boundary anyway: per-step checkpoints cost +27 ms (SQLite) / +47 ms
(PostgreSQL) per turn here and would only let a re-run skip steps that are idempotent already.

Turns of one conversation run one at a time and in order: the job holds a Redis lease on the
conversation (renewed while it runs, so a dead worker's lease lapses in seconds) and runs every
queued turn of it up to its own, oldest first; a job whose turn is already done is a no-op.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import sqlalchemy as sa
from rq import Callback, Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy.engine import Engine as DbEngine
from sqlmodel import select

from builder.models import StoredWorkflow, WorkflowVersion
from builder.schema import Workflow
from builder.yaml_io import WorkflowLoadError, load
from core import crypto
from core.db import get_engine, tenant_session, utcnow
from core.redis import get_redis, is_fake
from core.settings import Settings, get_settings
from runtime import service as svc
from runtime.checkpointer import SqlCheckpointer, flush
from runtime.context import Event
from runtime.engine import APOLOGY, Engine, TurnResult
from runtime.events import insert_events
from runtime.models import Conversation, Turn
from runtime.streams import Publisher
from tenants.models import Secret

log = logging.getLogger(__name__)

PRIORITIES = ("high", "default", "low")
QUEUE_PREFIX = "flowdesk-"
#: Seconds a turn job may run before RQ kills it (then it is retried).
JOB_TIMEOUT_S = 60
#: Attempts after the first (a crash, a timeout, the database away); then the dead-letter queue.
RETRIES = 2
#: Failed jobs stay in RQ's failed registry (the DLQ) this long.
FAILURE_TTL_S = 7 * 24 * 3600
RESULT_TTL_S = 300
LEASE_TTL_S = 8
LEASE_WAIT_S = 30


def queue_name(priority: str) -> str:
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}")
    return QUEUE_PREFIX + priority


def queue_names() -> list[str]:
    """Highest priority first: the order a worker listens in."""
    return [queue_name(p) for p in PRIORITIES]


def job_id(turn_id: str) -> str:
    return f"turn-{turn_id}"


def enqueue_turn(
    tenant_id: str,
    turn_id: str,
    priority: str = "default",
    settings: Settings | None = None,
    conversation_id: str | None = None,
) -> None:
    """Put the turn on its queue (once: a job that exists already is left alone)."""
    settings = settings or get_settings()
    redis = get_redis(settings)
    if is_fake(redis):
        from runtime.worker import ensure_embedded_worker

        ensure_embedded_worker(settings)
    jid = job_id(turn_id)
    if Job.exists(jid, connection=redis):
        job = Job.fetch(jid, connection=redis, serializer=JSONSerializer)
        if job.get_status() not in ("finished", "failed", "stopped", "canceled"):
            return
        job.delete()
    Queue(queue_name(priority), connection=redis, serializer=JSONSerializer).enqueue(
        "runtime.jobs.run_turn",
        turn_id,
        tenant_id,
        conversation_id,
        job_id=jid,
        job_timeout=JOB_TIMEOUT_S,
        retry=Retry(max=RETRIES),
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
        on_failure=Callback(on_turn_failure),
        description=f"turn {turn_id} of tenant {tenant_id}",
    )


# ---------------------------------------------------------------- the job


def run_turn(turn_id: str, tenant_id: str, conversation_id: str | None = None) -> dict[str, Any]:
    """RQ job: answer the turn (and any older queued turn of its conversation)."""
    return get_runner().run(tenant_id, turn_id, conversation_id)


def on_turn_failure(job: Job, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: on the LAST failure the user gets an apology and a human (DLQ)."""
    if job.retries_left:
        return  # RQ retries it
    turn_id, tenant_id = str(job.args[0]), str(job.args[1])
    try:
        get_runner().fail(tenant_id, turn_id, f"{getattr(exc_type, '__name__', exc_type)}: {exc}"[:1000])
    except Exception:
        log.exception("could not record the failure of turn %s", turn_id)


_runner: TurnRunner | None = None
_runner_lock = threading.Lock()


def get_runner() -> TurnRunner:
    """The process's runner (preloaded engine, router and caches), made on first use."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = TurnRunner()
        return _runner


def reset_runner() -> None:
    """Forget the process's runner (tests switch databases and settings)."""
    global _runner
    with _runner_lock:
        _runner = None


class Lease:
    """A Redis lease on one conversation, renewed in the background while held.

    SET NX PX to take it; renew and release are compare-and-set transactions (WATCH/MULTI), not
    Lua, so the embedded fakeredis (no Lua engine) runs the same code as a real Redis.
    """

    def __init__(self, redis: Any, key: str, ttl_s: int = LEASE_TTL_S, wait_s: float = LEASE_WAIT_S) -> None:
        self.redis, self.key, self.ttl_ms, self.wait_s = redis, key, ttl_s * 1000, wait_s
        self.token = uuid.uuid4().hex.encode()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        deadline = time.monotonic() + self.wait_s
        delay = 0.005
        while not self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            if time.monotonic() > deadline:
                raise TimeoutError(f"conversation busy for {self.wait_s:g}s: {self.key}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        self._thread = threading.Thread(target=self._renew, daemon=True, name="flowdesk-lease")
        self._thread.start()
        return self

    def _cas(self, action: Callable[[Any], None]) -> bool:
        from redis.exceptions import WatchError

        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(self.key)
                if pipe.get(self.key) != self.token:
                    pipe.unwatch()
                    return False
                pipe.multi()
                action(pipe)
                pipe.execute()
                return True
            except WatchError:
                return False

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self._cas(lambda p: p.pexpire(self.key, self.ttl_ms)):
                    log.warning("lease %s was lost", self.key)
                    return
            except Exception as exc:
                log.warning("lease renewal failed: %s", exc)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            self._cas(lambda p: p.delete(self.key))
        except Exception as exc:  # it lapses by itself within the TTL
            log.warning("lease release failed: %s", exc)


class TurnRunner:
    """What one worker process keeps between jobs: the engine, the router, parsed workflows."""

    def __init__(self, settings: Settings | None = None, db: DbEngine | None = None) -> None:
        from runtime.bandit import RedisFeatureStore
        from runtime.router import Router

        self.settings = settings or get_settings()
        self.db = db or get_engine()
        self.redis = get_redis(self.settings)
        self.saver = SqlCheckpointer(self.db)
        router = Router(settings=self.settings, features=RedisFeatureStore(self.redis))
        self.engine = Engine(settings=self.settings, router=router, checkpointer=self.saver)
        self._workflows: OrderedDict[tuple[str, str], Workflow] = OrderedDict()
        #: id(workflow) -> its text names a ``${secret:...}`` (then the turn decrypts the tenant's).
        self._needs_secrets: dict[int, bool] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ workflows

    def _parsed(self, key: tuple[str, str], text: Callable[[], str | None]) -> Workflow | None:
        with self._lock:
            if key in self._workflows:
                self._workflows.move_to_end(key)
                return self._workflows[key]
        body = text()
        if body is None:
            return None
        try:
            wf = load(body).workflow
        except WorkflowLoadError:
            return None
        with self._lock:
            self._workflows[key] = wf
            self._needs_secrets[id(wf)] = "${secret:" in body
            while len(self._workflows) > 512:
                self._needs_secrets.pop(id(self._workflows.popitem(last=False)[1]), None)
        return wf

    def _published(self, s: Any, tenant_id: str, row: StoredWorkflow, number: int) -> Workflow | None:
        def text() -> str | None:
            v = s.exec(
                select(WorkflowVersion).where(
                    WorkflowVersion.workflow_id == row.id, WorkflowVersion.number == number
                )
            ).first()
            return v.yaml if v else None

        # Versions never change: (tenant, workflow, number) is a permanent cache key.
        return self._parsed((tenant_id, f"{row.id}@{number}"), text)

    def _load(self, s: Any, tenant_id: str, conv: Any) -> tuple[Workflow, dict[str, Workflow | None], str]:
        """The conversation's workflow and every subflow it uses, resolved once at turn start,
        and the compiled graph's cache key (the ids of exactly those versions).

        A pinned published version found in the cache costs no query; a draft costs one.
        """
        draft = conv.version is None
        key = [f"{tenant_id}:{conv.workflow_id}@{conv.version}"]
        wf: Workflow | None = None
        if not draft:
            with self._lock:
                wf = self._workflows.get((tenant_id, f"{conv.workflow_id}@{conv.version}"))
        if wf is None:
            row = s.get(StoredWorkflow, conv.workflow_id)
            if row is None or row.tenant_id != tenant_id:
                raise LookupError(f"workflow {conv.workflow_slug!r} no longer exists")
            if draft:
                wf = self._parsed((tenant_id, f"draft:{row.draft_hash}"), lambda: row.draft_yaml)
                key = [f"{tenant_id}:draft:{row.draft_hash}"]
            else:
                wf = self._published(s, tenant_id, row, cast(int, conv.version))
        if wf is None:
            raise LookupError(f"workflow {conv.workflow_slug!r} cannot be loaded")
        subflows: dict[str, Workflow | None] = {}
        todo = [wf]
        while todo:
            for node in todo.pop().nodes:
                slug = str(node.config.get("workflow") or "") if node.type == "subflow" else ""
                if not slug or slug in subflows:
                    continue
                sub_row = s.exec(select(StoredWorkflow).where(StoredWorkflow.slug == slug)).first()
                sub: Workflow | None = None
                if sub_row is not None and draft:
                    sub = self._parsed(
                        (tenant_id, f"draft:{sub_row.draft_hash}"), lambda r=sub_row: r.draft_yaml
                    )
                    key.append(f"{slug}=draft:{sub_row.draft_hash}")
                elif sub_row is not None and sub_row.published_version:
                    sub = self._published(s, tenant_id, sub_row, sub_row.published_version)
                    key.append(f"{slug}={sub_row.id}@{sub_row.published_version}")
                if sub is None:
                    key.append(f"{slug}=missing")
                subflows[slug] = sub
                if sub is not None:
                    todo.append(sub)
        return wf, subflows, "|".join(key)

    # ------------------------------------------------------------ running

    def run(self, tenant_id: str, turn_id: str, conversation_id: str | None = None) -> dict[str, Any]:
        t = svc.TURNS.c
        if conversation_id is None:
            with tenant_session(tenant_id, engine=self.db) as s:
                row = (
                    s.connection()
                    .execute(sa.select(t.conversation_id).where(t.id == turn_id, t.tenant_id == tenant_id))
                    .first()
                )
            if row is None:
                log.warning("turn %s of tenant %s is gone; nothing to do", turn_id, tenant_id)
                return {"turn_id": turn_id, "skipped": "missing"}
            conversation_id = str(row.conversation_id)
        done: list[str] = []
        with Lease(self.redis, f"flowdesk:lease:conversation:{conversation_id}"):
            # Every queued turn of the conversation up to this one, oldest first (see module doc).
            while (ran := self._run_next(tenant_id, conversation_id, turn_id)) is not None:
                done.append(ran)
                if ran == turn_id:
                    break
        if not done:
            return {"turn_id": turn_id, "skipped": "not queued"}
        return {"turn_id": turn_id, "ran": done}

    def _run_next(self, tenant_id: str, cid: str, target_id: str) -> str | None:
        """Run the conversation's oldest queued turn not newer than ``target_id``; its id, or None.

        Two transactions: one reads the turn, the conversation and its checkpoint (prefetched into
        the turn scope), one commits checkpoint + events + reply.
        """
        t, c = svc.TURNS.c, svc.CONVERSATIONS.c
        with self.saver.turn(tenant_id) as scope:
            with tenant_session(tenant_id, engine=self.db) as s:
                conn = s.connection()
                target_seq = (
                    sa.select(t.seq).where(t.id == target_id, t.tenant_id == tenant_id).scalar_subquery()
                )
                turn = conn.execute(
                    sa.select(t.id, t.seq, t.text)
                    .where(
                        t.tenant_id == tenant_id,
                        t.conversation_id == cid,
                        t.status == svc.QUEUED,
                        t.seq <= target_seq,
                    )
                    .order_by(t.seq)
                    .limit(1)
                ).first()
                if turn is None:
                    return None
                conv = conn.execute(
                    sa.select(c.status, c.workflow_id, c.workflow_slug, c.version).where(
                        c.id == cid, c.tenant_id == tenant_id
                    )
                ).one()
                pub = Publisher(turn.id, self.settings)
                if conv.status != svc.ACTIVE:
                    # A human has the conversation (or it is closed): the bot stays silent.
                    out = self._commit_held(conn, tenant_id, cid, turn.id)
                    held = True
                else:
                    held = False
                    wf, subflows, graph_key = self._load(s, tenant_id, conv)
                    needs = any(self._needs_secrets.get(id(w), True) for w in (wf, *subflows.values()) if w)
                    secrets = self._secrets(s) if needs else {}
                    self.saver.prefetch(conn, cid)
            if held:
                pub.publish("done", out)
                return str(turn.id)

            def on_event(ev: Event) -> None:
                if ev.type in ("node_started", "node_finished"):
                    pub.publish("node", {"status": ev.type.removeprefix("node_"), **ev.payload})
                elif ev.type == "route_decided":
                    pub.publish("route", ev.payload)

            result = self.engine.run_turn(
                wf,
                cid,
                turn.text,
                tenant_id=tenant_id,
                turn_id=turn.id,
                on_token=lambda tok: pub.publish("token", {"text": tok}) if pub.live else None,
                on_event=on_event if pub.live else None,
                resolve=subflows.get,
                secrets=secrets,
                durability="exit",
                graph_key=graph_key,
            )
            with tenant_session(tenant_id, engine=self.db) as s:
                flush(s.connection(), scope)
                out = self._commit(s, tenant_id, turn.id, cid, result)
        pub.publish("done", out)
        return str(turn.id)

    @staticmethod
    def _secrets(s: Any) -> dict[str, str]:
        return {r.name: crypto.decrypt(r.ciphertext) for r in s.exec(select(Secret)).all()}

    def _commit(self, s: Any, tenant_id: str, turn_id: str, cid: str, result: TurnResult) -> dict[str, Any]:
        conn = s.connection()
        insert_events(conn, tenant_id, cid, turn_id, result.events)
        now = utcnow()
        t = svc.TURNS.c
        values = {
            "status": svc.DONE,
            "reply": result.reply,
            "intent": result.intent,
            "route": result.route,
            "path": result.path,
            "usage": result.usage,
            "waiting": result.waiting,
            "error": result.error,
            "finished_at": now,
        }
        # The status guard makes the commit exactly-once even if two runs raced past the lease.
        updated = conn.execute(
            sa.update(svc.TURNS)
            .where(t.id == turn_id, t.tenant_id == tenant_id, t.status == svc.QUEUED)
            .values(**values)
        )
        if updated.rowcount != 1:
            raise RuntimeError(f"turn {turn_id} was committed by another run")
        conv_values: dict[str, Any] = {"updated_at": now}
        if result.handoffs:
            h = result.handoffs[0]
            conv_values.update(
                status=svc.WAITING_HUMAN,
                handoff_reason=h.reason,
                handoff_priority=h.priority,
                handoff_queue=h.queue,
                handoff_at=now,
            )
        c = svc.CONVERSATIONS.c
        conn.execute(
            sa.update(svc.CONVERSATIONS).where(c.id == cid, c.tenant_id == tenant_id).values(**conv_values)
        )
        return {
            "turn_id": turn_id,
            "conversation_id": cid,
            **{k: v for k, v in values.items() if k != "finished_at"},
            "held": False,
            "handoff": bool(result.handoffs),
        }

    @staticmethod
    def _commit_held(conn: Any, tenant_id: str, cid: str, turn_id: str) -> dict[str, Any]:
        t = svc.TURNS.c
        now = utcnow()
        conn.execute(
            sa.update(svc.TURNS)
            .where(t.id == turn_id, t.tenant_id == tenant_id, t.status == svc.QUEUED)
            .values(status=svc.DONE, held=True, reply=None, finished_at=now)
        )
        ts = time.time()
        insert_events(
            conn,
            tenant_id,
            cid,
            turn_id,
            [
                {"type": "turn_started", "held": True, "ts": ts},
                {"type": "turn_finished", "held": True, "waiting": False, "failed": False, "ts": ts},
            ],
        )
        row = conn.execute(sa.select(svc.TURNS).where(t.id == turn_id, t.tenant_id == tenant_id)).one()
        return {**svc.turn_out(Turn(**row._mapping)), "handoff": True}

    def fail(self, tenant_id: str, turn_id: str, error: str) -> bool:
        """Retries are exhausted: apologise, hand the conversation to a human, keep the job in the DLQ."""
        with tenant_session(tenant_id, engine=self.db) as s:
            turn = s.get(Turn, turn_id)
            if turn is None or turn.status != svc.QUEUED:
                return False
            now = utcnow()
            turn.status, turn.reply, turn.error, turn.finished_at = svc.FAILED, APOLOGY, error, now
            s.add(turn)
            conv = s.get(Conversation, turn.conversation_id)
            if conv is not None and conv.status == svc.ACTIVE:
                conv.status, conv.handoff_reason = svc.WAITING_HUMAN, f"runtime_error: {error[:200]}"
                conv.handoff_priority, conv.handoff_queue, conv.handoff_at = "high", "support", now
                conv.updated_at = now
                s.add(conv)
            s.flush()
            ts = time.time()
            insert_events(
                s.connection(),
                tenant_id,
                turn.conversation_id,
                turn_id,
                [
                    {"type": "turn_failed", "error": error, "dead_letter": True, "ts": ts},
                    {"type": "reply", "text": APOLOGY, "ts": ts},
                    {"type": "handoff", "reason": "runtime_error", "priority": "high", "ts": ts},
                    {"type": "turn_finished", "failed": True, "waiting": False, "ts": ts},
                ],
            )
            out = {**svc.turn_out(turn), "handoff": True}
        pub = Publisher(turn_id, self.settings)
        pub.publish("error", {"code": "turn_failed", "message": APOLOGY, "turn_id": turn_id})
        pub.publish("done", out)
        return True
