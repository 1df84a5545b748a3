"""A turn whose worker dies on every attempt ends in the DLQ WITH an apology, never silent.

The reaper (runtime.worker.reap) runs in a thread of a worker; RQ runs the job's failure callback
there (``on_turn_failure``: apology + handoff when retries are exhausted). With RQ's default
SIGALRM timeout the callback raised "signal only works in main thread" and the turn stayed
``queued`` forever: lost. Real worker processes, real SIGKILLs, real PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
from rq import Worker

from bench.support import harness
from runtime import jobs
from runtime import service as svc
from tests.conftest import REDIS_URL

pytestmark = [pytest.mark.slow, pytest.mark.pg, pytest.mark.redis]


@pytest.fixture
def stack() -> Iterator[harness.Stack]:
    with harness.use_stack(redis_url=REDIS_URL.rsplit("/", 1)[0] + "/12") as st:
        yield st


def _running(conn: redis.Redis, pid: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(w.pid == pid and w.get_current_job_id() for w in Worker.all(connection=conn)):
            return True
        time.sleep(0.1)
    return False


def test_turn_abandoned_on_every_attempt_gets_an_apology(stack: harness.Stack) -> None:
    conn = redis.Redis.from_url(stack.redis_url)
    conv = svc.start_conversation(stack.tenant_id, stack.workflow)
    # Someone holds the conversation: the job waits for the lease, so it is "started" when killed.
    lease = f"flowdesk:lease:conversation:{conv.id}"
    conn.set(lease, b"held-by-test", px=600_000)
    posted = svc.post_message(stack.tenant_id, conv.id, "hello", idempotency_key="k1")
    jobs.enqueue_turn(stack.tenant_id, posted.turn.id, posted.queue)
    procs = harness.Procs(stack.child_env())
    try:
        for _attempt in range(jobs.RETRIES + 1):
            p = procs.start("worker", "-m", "runtime.cli", "worker")
            assert _running(conn, p.pid), "the worker never started the turn"
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        conn.delete(lease)
        procs.start("worker", "-m", "runtime.cli", "worker")  # its reaper dead-letters the job
        deadline = time.monotonic() + 60
        while (turn := svc.get_turn(stack.tenant_id, posted.turn.id)).status == svc.QUEUED:
            assert time.monotonic() < deadline, "the abandoned turn was never finished"
            time.sleep(0.2)
    finally:
        procs.stop()
    assert turn.status == svc.FAILED
    assert turn.reply == jobs.APOLOGY
    check = harness.verify_turns(stack.db.admin, stack.tenant_id, [(conv.id, "k1")])
    assert check["lost"] == 0 and check["duplicated"] == 0
    assert svc.transcript(stack.tenant_id, conv.id)["status"] == svc.WAITING_HUMAN
