"""Turn workers: RQ ``SimpleWorker`` (no fork per job), a fast reaper, and the embedded thread.

* :class:`TurnWorker` runs jobs in its own process or thread (forking per job measured 5-8x
  slower here, research/runtime-baseline.md). While a job runs, a heartbeat thread renews the
  job's entry in RQ's started registry every second with a ``HEARTBEAT_TTL_S`` lease, so a worker
  that dies (SIGKILL, OOM) stops renewing it and the job counts as abandoned seconds later.
* :func:`reap` (run by every worker every ``REAP_INTERVAL_S``, one at a time through a Redis
  lock) hands abandoned jobs back to RQ's own ``StartedJobRegistry.cleanup``: retried while the
  job has retries left, else moved to the failed registry (the DLQ). RQ's stock maintenance does
  the same every 10 minutes only.
* :func:`requeue_orphans` re-enqueues turns the database says are queued but whose job no worker
  will run: gone (the embedded fakeredis after a restart, a Redis that lost data) or popped by a
  worker that died before registering it. At worker start, and every ``SWEEP_INTERVAL_S`` in one
  worker (found by bench/crash.py: RQ itself never recovers that last case).
* :func:`ensure_embedded_worker`: with ``REDIS_URL`` unset the same worker runs in a daemon
  thread of the web process over the process's fakeredis; the request never runs the turn.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import WorkerStatus

from core.db import system_session, tenant_plans, tenant_session, utcnow
from core.redis import get_redis
from core.settings import Settings, get_settings
from runtime import jobs, retention
from runtime import service as svc

log = logging.getLogger(__name__)

HEARTBEAT_TTL_S = 5
HEARTBEAT_EVERY_S = 1.0
REAP_INTERVAL_S = 1.0
#: How often one worker looks for queued turns whose job was lost, and how old such a turn must be.
SWEEP_INTERVAL_S = 5.0
ORPHAN_AGE_S = 5.0
#: The worker's own key in Redis: short, so a dead worker disappears from `rq info` quickly.
WORKER_TTL_S = 20
#: Retention (runtime.retention) runs at most this often across ALL workers (a Redis lock).
RETENTION_INTERVAL_S = 3600.0


class TurnWorker(SimpleWorker):
    """A non-forking RQ worker whose running job is kept alive by a heartbeat thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        super().__init__(*args, **kwargs)
        self._reaper_stop = threading.Event()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return HEARTBEAT_TTL_S

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_EVERY_S):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception as exc:  # Redis blip: the next beat retries; the job goes on
                    log.warning("heartbeat of %s failed: %s", job.id, exc)

        beater = threading.Thread(target=beat, daemon=True, name=f"flowdesk-heartbeat-{job.id}")
        beater.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beater.join(timeout=2)
        self.set_state(WorkerStatus.IDLE)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # RQ's loop only notices a stop request between jobs; wait in 1 s slices so a stop
        # (embedded shutdown, tests) lands within a second even when the queues are empty.
        if timeout is None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while True:
            result = super().dequeue_job_and_maintain_ttl(1, max_idle_time=1)
            if result is not None:
                return result
            if self._stop_requested:
                raise StopRequested()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._install_signal_handlers()

    def work(self, *args: Any, **kwargs: Any) -> bool:
        if threading.current_thread() is not threading.main_thread():
            # SIGALRM only reaches the main thread: a thread worker times jobs out with a timer.
            self.death_penalty_class = TimerDeathPenalty
        reaper = threading.Thread(target=self._reap_loop, daemon=True, name="flowdesk-reaper")
        reaper.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._reaper_stop.set()

    def _reap_loop(self) -> None:
        while not self._reaper_stop.wait(REAP_INTERVAL_S):
            try:
                reap(self.connection)
            except Exception as exc:
                log.warning("reaper: %s", exc)
            try:
                sweep_orphans(self.connection)
            except Exception as exc:
                log.warning("orphan sweep: %s", exc)
            try:
                retention.purge_if_due(self.connection, RETENTION_INTERVAL_S)
            except Exception as exc:  # e.g. the database away: the next interval tries again
                log.warning("retention: %s", exc)


def reap(redis: Any) -> int:
    """Retry (or dead-letter) jobs whose worker stopped renewing them; returns how many."""
    # One reaper at a time across all workers (two would retry the same job twice).
    if not redis.set("flowdesk:reaper", b"1", nx=True, px=int(REAP_INTERVAL_S * 900)):
        return 0
    n = 0
    for name in jobs.queue_names():
        # The failure callback (on_turn_failure: apology + handoff once retries are exhausted) runs
        # here, in the reaper thread: RQ's default SIGALRM timeout only works on the main thread.
        registry = StartedJobRegistry(
            name, connection=redis, serializer=JSONSerializer, death_penalty_class=TimerDeathPenalty
        )
        expired = registry.get_expired_job_ids()
        if expired:
            log.warning("reaper: %d abandoned job(s) on %s: %s", len(expired), name, expired)
            registry.cleanup()
            n += len(expired)
    return n


def _job_lost(redis: Any, jid: str) -> bool:
    """True when no worker will ever run this job: its hash is gone, or it says ``queued`` but sits
    in no queue. The second happens when a worker dies between popping the id (BLPOP: with several
    queues RQ keeps no intermediate list) and registering it as started: a window of a few ms that
    RQ itself never recovers. A job still starting is re-enqueued too: the copy is a no-op."""
    try:
        job = Job.fetch(jid, connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return True
    if job.get_status() != "queued":
        return False  # started: the reaper's business; failed: the DLQ's; scheduled: RQ's
    return all(redis.lpos(Queue(name, connection=redis).key, jid) is None for name in jobs.queue_names())


def requeue_orphans(settings: Settings | None = None, *, older_than_s: float = 0.0) -> int:
    """Enqueue every queued turn (older than ``older_than_s``) whose job is lost (see _job_lost):
    at worker start (Redis may have lost its data) and every SWEEP_INTERVAL_S in one worker."""
    settings = settings or get_settings()
    redis = get_redis(settings)
    from tenants import plans

    t = svc.TURNS.c
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    n = 0
    with system_session() as s:
        tenants = tenant_plans(s)
    for tid, plan_name in tenants:
        with tenant_session(tid) as s:
            queued = (
                s.connection()
                .execute(
                    sa.select(t.id, t.conversation_id).where(
                        t.tenant_id == tid, t.status == svc.QUEUED, t.created_at <= cutoff
                    )
                )
                .all()
            )
        for row in queued:
            jid = jobs.job_id(row.id)
            if _job_lost(redis, jid):
                redis.delete(f"rq:job:{jid}")
                jobs.enqueue_turn(tid, row.id, plans.get_plan(plan_name).queue, settings, row.conversation_id)
                n += 1
    if n:
        log.warning("re-enqueued %d queued turn(s) whose job was lost", n)
    return n


def sweep_orphans(redis: Any, settings: Settings | None = None) -> int:
    """The periodic :func:`requeue_orphans`, run by one worker at a time."""
    if not redis.set("flowdesk:orphan-sweep", b"1", nx=True, px=int(SWEEP_INTERVAL_S * 1000)):
        return 0
    return requeue_orphans(settings, older_than_s=ORPHAN_AGE_S)


def make_worker(
    settings: Settings | None = None, queues: list[str] | None = None, name: str | None = None
) -> TurnWorker:
    redis = get_redis(settings)
    names = queues or jobs.queue_names()
    return TurnWorker(
        [Queue(q, connection=redis, serializer=JSONSerializer) for q in names],
        connection=redis,
        name=name or f"flowdesk-{uuid.uuid4().hex[:8]}",
    )


# ---------------------------------------------------------------- embedded (no REDIS_URL)

_embedded: dict[str, Any] = {}
_embedded_lock = threading.Lock()


def ensure_embedded_worker(settings: Settings | None = None) -> TurnWorker:
    """Start (once per process) the worker thread of the embedded default."""
    with _embedded_lock:
        thread = _embedded.get("thread")
        if thread is not None and thread.is_alive():
            return _embedded["worker"]
        ready = threading.Event()
        box: dict[str, Any] = {}

        def main() -> None:
            worker = make_worker(settings, name=f"flowdesk-embedded-{uuid.uuid4().hex[:6]}")
            box["worker"] = worker
            ready.set()
            try:
                jobs.get_runner()  # preload the engine and router before the first job
            except Exception as exc:  # e.g. no database yet: the first job will say why
                log.warning("embedded worker preload failed: %s", exc)
            worker.work(burst=False, with_scheduler=False, logging_level="WARNING")

        thread = threading.Thread(target=main, daemon=True, name="flowdesk-embedded-worker")
        thread.start()
        ready.wait(10)
        _embedded.update(thread=thread, worker=box["worker"])
        return box["worker"]


def stop_embedded_worker(timeout: float = 10.0) -> None:
    """Stop the embedded worker after its current job (tests, shutdown)."""
    with _embedded_lock:
        worker, thread = _embedded.pop("worker", None), _embedded.pop("thread", None)
    if worker is not None:
        worker._stop_requested = True  # request_stop() installs signal handlers: main thread only
    if thread is not None:
        thread.join(timeout)
