"""Worker crashes: SIGKILL turn workers at random moments while 200 turns run; count what survived.

    python -m bench.crash [--turns 200] [--convs 40] [--rate 25] [--kills 8] [--seed 1]

A fresh PostgreSQL database (app role, RLS) and a private Redis database (11), the 5-node
offline workflow of ``bench.support.harness.BENCH_WORKFLOW``, and ``flowdesk worker --processes 2`` (the
supervisor restarts a dead worker). This process posts the turns the way the API does
(``runtime.service.post_message`` + ``runtime.jobs.enqueue_turn``, an Idempotency-Key each,
round-robin over ``--convs`` conversations at ``--rate`` turns/s) while a killer SIGKILLs a
random worker process every 0.3-1.5 s (``--kills`` times). Then it waits (bounded) until every
turn is finished and counts, in the database: turns, done, failed, ``reply`` and
``turn_finished`` events per turn (exactly 1 each), duplicated and lost turns (must be 0/0), and
for each kill that hit a running job, the time from the kill to that turn's commit (recovery).

What makes it hold: the whole turn commits in one transaction (runtime.jobs), a Redis lease per
conversation, the heartbeat + reaper in runtime.worker (an abandoned job is retried within ~5 s),
the status guard on the commit, and idempotency keys on tool calls. Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.support import harness


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def running_workers(redis_url: str, pids: list[int], killed: set[int]) -> dict[int, str | None]:
    """pid -> current job id, for the given processes that are up as RQ workers (a worker still
    booting, or killed and not yet reaped by the supervisor, is not a worker to kill)."""
    import redis
    from rq import Worker

    conn = redis.Redis.from_url(redis_url)
    up: dict[int, str | None] = {}
    for w in Worker.all(connection=conn):
        if w.pid in pids and w.pid not in killed and _alive(w.pid):
            up[w.pid] = w.get_current_job_id()
    return up


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def post_all(stack: harness.Stack, convs: list[str], n: int, rate: float, out: list[tuple[str, str]]) -> None:
    from runtime import jobs
    from runtime import service as svc

    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        cid, key = convs[i % len(convs)], f"crash-{i}"
        posted = svc.post_message(
            stack.tenant_id, cid, f"message {i}: where is my order?", idempotency_key=key
        )
        jobs.enqueue_turn(stack.tenant_id, posted.turn.id, posted.queue)
        out.append((cid, key))


def finished(admin: sa.Engine, tenant_id: str) -> dict[str, float]:
    """turn id -> commit time (epoch seconds) of every finished turn."""
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, finished_at FROM turns WHERE tenant_id = :t AND status <> 'queued'"),
            {"t": tenant_id},
        ).all()
    return {r[0]: r[1].timestamp() for r in rows if r[1] is not None}


def event_counts(admin: sa.Engine, tenant_id: str) -> dict[str, dict[str, int]]:
    """For ``reply`` and ``turn_finished``: how many turns have 0, 1, 2... such events."""
    out: dict[str, dict[str, int]] = {}
    with admin.connect() as conn:
        for kind in ("reply", "turn_finished"):
            rows = conn.execute(
                sa.text(
                    "SELECT n, count(*) FROM (SELECT t.id, (SELECT count(*) FROM run_events e"
                    " WHERE e.turn_id = t.id AND e.type = :k) AS n FROM turns t WHERE t.tenant_id = :t) x"
                    " GROUP BY n ORDER BY n"
                ),
                {"k": kind, "t": tenant_id},
            ).all()
            out[kind] = {str(r[0]): int(r[1]) for r in rows}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=200)
    ap.add_argument("--convs", type=int, default=40, help="conversations the turns are spread over")
    ap.add_argument("--rate", type=float, default=25.0, help="turns posted per second")
    ap.add_argument("--kills", type=int, default=8, help="SIGKILLs (stops earlier if the turns are done)")
    ap.add_argument("--min-gap", type=float, default=0.3, help="seconds between kills, at least")
    ap.add_argument("--max-gap", type=float, default=1.5, help="seconds between kills, at most")
    ap.add_argument("--timeout", type=float, default=180.0, help="give up waiting for the turns after")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    t_start = time.perf_counter()
    result: dict[str, Any] = {"bench": "crash", "machine": harness.machine()}
    from runtime import service as svc

    with harness.use_stack() as stack:
        procs = harness.Procs(stack.child_env())
        kills: list[dict[str, Any]] = []
        posted: list[tuple[str, str]] = []
        killed: set[int] = set()
        try:
            sup = procs.start("supervisor", "-m", "runtime.cli", "worker", "--processes", "2")
            harness.wait_workers(stack.redis_url, 2)
            convs = [svc.start_conversation(stack.tenant_id, stack.workflow).id for _ in range(args.convs)]
            poster = threading.Thread(
                target=post_all, args=(stack, convs, args.turns, args.rate, posted), daemon=True
            )
            t0 = time.perf_counter()
            poster.start()
            while len(kills) < args.kills:
                time.sleep(rnd.uniform(args.min_gap, args.max_gap))
                if not poster.is_alive() and not harness.queued_turns(stack.db.admin, stack.tenant_id):
                    break  # nothing left to interrupt
                up = running_workers(stack.redis_url, children(sup.pid), killed)
                if not up:
                    continue
                pid = rnd.choice(sorted(up))
                job = up[pid]
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.add(pid)
                kills.append(
                    {
                        "at_s": round(time.perf_counter() - t0, 3),
                        "epoch": time.time(),
                        "pid": pid,
                        "turn_id": job.removeprefix("turn-") if job else None,
                    }
                )
            poster.join(args.timeout)
            drained = harness.wait_drained(stack.db.admin, stack.tenant_id, args.timeout)
            run_s = time.perf_counter() - t0
            check = harness.verify_turns(stack.db.admin, stack.tenant_id, posted)
            done_at = finished(stack.db.admin, stack.tenant_id)
            events = event_counts(stack.db.admin, stack.tenant_id)
            import redis
            from rq.registry import FailedJobRegistry

            from runtime import jobs

            conn = redis.Redis.from_url(stack.redis_url)
            dlq = sum(FailedJobRegistry(q, connection=conn).count for q in jobs.queue_names())
        finally:
            procs.stop()
        reaped = 0
        restarts = 0
        for log in procs.logdir.glob("*.log"):
            text = log.read_text(errors="replace")
            reaped += text.count("abandoned job(s)")
            restarts += text.count("restarting")
    recovery = []
    for k in kills:
        if k["turn_id"]:
            end = done_at.get(k["turn_id"])
            k["recovered_s"] = round(end - k["epoch"], 3) if end else None
            if end and end < k["epoch"]:
                k["note"] = "committed just before the kill (the worker had not cleared its job yet)"
            elif end:
                recovery.append(end - k["epoch"])
        k.pop("epoch")
    statuses = check["statuses"]
    result.update(
        {
            "setup": {
                "workflow": "bench.support.harness.BENCH_WORKFLOW (5 nodes, offline LLM)",
                "workers": "flowdesk worker --processes 2 (restarts dead workers)",
                "turns": args.turns,
                "conversations": args.convs,
                "post_rate": args.rate,
                "seed": args.seed,
            },
            "turns": check["turn_rows"],
            "posted": check["posted"],
            "done": statuses.get("done", 0),
            "failed": statuses.get("failed", 0),
            "queued_at_end": statuses.get("queued", 0),
            "replies_per_turn": events["reply"],
            "turn_finished_per_turn": events["turn_finished"],
            "duplicated": check["duplicated"],
            "lost": check["lost"],
            "lost_detail": check["lost_detail"],
            "duplicated_detail": check["duplicated_detail"],
            "kills": len(kills),
            "kills_mid_turn": sum(1 for k in kills if k["turn_id"] and "note" not in k),
            "kill_log": kills,
            "recovery_s": {
                "max": round(max(recovery), 3) if recovery else None,
                "p50": round(harness.pct(recovery, 50), 3) if recovery else None,
            },
            "reaper_passes_with_abandoned_jobs": reaped,
            "worker_restarts": restarts,
            "dead_letter_jobs": dlq,
            "drained": drained,
            "run_s": round(run_s, 1),
            "logs": str(procs.logdir),
            "wall_s": round(time.perf_counter() - t_start, 1),
        }
    )
    return result


if __name__ == "__main__":
    res = main()
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")
    print(
        f"crash: {res['turns']} turns, {res['done']} done, {res['failed']} failed, {res['kills']} kills "
        f"({res['kills_mid_turn']} mid-turn), lost {res['lost']}, duplicated {res['duplicated']}, "
        f"max recovery {res['recovery_s']['max']} s",
        file=sys.stderr,
    )
