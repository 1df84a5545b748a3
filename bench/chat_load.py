"""Chat turns under load: HTTP -> queue -> 2 worker processes -> events -> reply, vs the floor.

    python -m bench.chat_load [--rate 100] [--convs 10,50,200] [--messages 5]
                              [--closed 20,200] [--duration 6] [--floor-turns 500]

Everything real and on loopback: a fresh PostgreSQL database (app role, RLS live), a private Redis
database (11, flushed), the API (``app.api:api`` under uvicorn, ``bench.support.serve_api``) and two
``python -m runtime.cli worker`` processes; the offline LLM; the 5-node workflow of
``bench.support.harness.BENCH_WORKFLOW`` published for a business-plan tenant whose rate limits and
concurrency cap are raised out of reach (``bench.support.harness.raise_plan_limits``: the limiter still
runs, its numbers do not bind), so this measures the runtime, not the limiter.

(a) open loop: N conversations (``--convs``) x M messages, posted at a fixed arrival rate
    (``--rate``, round-robin over the conversations) with an Idempotency-Key each; latency is
    client side, request sent -> reply received (``?wait=30``; a 202 is followed by polling).
(b) closed loop: C conversations (``--closed``), each posting its next message when the reply
    arrives, for ``--duration`` seconds: the sustainable turns/s.
(c) lost / duplicated turns: every posted message must have exactly one turn row, status done,
    one ``turn_finished`` and one ``reply`` event, counted in the database afterwards.
(d) the floor, in the same run: the same arrival pattern through raw RQ + raw LangGraph
    (``bench.support.floor_jobs``: 5-node graph, 2 stock SimpleWorker processes, no API, no events, no
    database), and our/floor ratios.

Prints one JSON object on stdout and a one-line summary on stderr. Budget (DESIGN.md §8): at
100 turns/s open loop, p50 < 25 ms and p99 < 100 ms; zero lost or duplicated turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.support import harness
from bench.support.floor_jobs import QUEUE as FLOOR_QUEUE

BUDGET = {"open_loop_p50_ms": 25.0, "open_loop_p99_ms": 100.0}
#: One turn gives up after this long (client side; counted as an error, checked in the DB).
TURN_DEADLINE_S = 120.0


@dataclass
class Outcome:
    ok: bool
    latency_s: float
    retries: int = 0
    error: str | None = None


@dataclass
class Tally:
    """What one phase's turns did, client side."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0

    def add(self, o: Outcome) -> None:
        self.retries += o.retries
        if o.ok:
            self.latencies.append(o.latency_s)
        else:
            self.errors[o.error or "error"] = self.errors.get(o.error or "error", 0) + 1


Turn = Callable[[str, str], Awaitable[Outcome]]


# ---------------------------------------------------------------- ours: the HTTP API


class Ours:
    def __init__(self, client: httpx.AsyncClient, workflow: str) -> None:
        self.client, self.workflow = client, workflow
        #: (conversation_id, idempotency_key) of every message the API accepted.
        self.posted: list[tuple[str, str]] = []
        #: Keys whose request failed without an answer: a turn may or may not exist for them.
        self.uncertain: list[tuple[str, str]] = []

    async def conversation(self) -> str:
        for attempt in range(3):
            try:
                r = await self.client.post("/api/v1/conversations", json={"workflow_id": self.workflow})
                break
            except httpx.TransportError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2)
        r.raise_for_status()
        return str(r.json()["id"])

    async def conversations(self, n: int) -> list[str]:
        out: list[str] = []
        for i in range(0, n, 20):
            out += await asyncio.gather(*(self.conversation() for _ in range(min(20, n - i))))
        return out

    async def turn(self, cid: str, text: str) -> Outcome:
        key = uuid.uuid4().hex
        t0 = time.perf_counter()
        deadline = t0 + TURN_DEADLINE_S
        retries = 0
        url = f"/api/v1/conversations/{cid}/messages"
        while True:
            try:
                r = await self.client.post(
                    url, params={"wait": 30}, json={"text": text}, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError as exc:
                r, err = None, type(exc).__name__
            if r is not None and r.status_code in (200, 202):
                self.posted.append((cid, key))
                body = r.json()
                while body.get("status") == "queued" and time.perf_counter() < deadline:
                    await asyncio.sleep(0.1)
                    body = (await self.client.get(f"/api/v1/turns/{body['turn_id']}")).json()
                if body.get("status") == "queued":
                    return Outcome(False, 0.0, retries, "deadline")
                return Outcome(
                    body.get("status") == "done", time.perf_counter() - t0, retries, body.get("status")
                )
            if r is not None:
                err = f"http_{r.status_code}"
                if r.status_code not in (429, 503):
                    self.uncertain.append((cid, key))
                    return Outcome(False, 0.0, retries, err)
            # Retried with the SAME Idempotency-Key: never a second turn.
            retries += 1
            if time.perf_counter() > deadline or retries > 20:
                self.uncertain.append((cid, key))
                return Outcome(False, 0.0, retries, err)
            await asyncio.sleep(0.1 * retries)


# ---------------------------------------------------------------- the floor: raw RQ + LangGraph


class Floor:
    def __init__(self, redis_url: str) -> None:
        import redis
        from rq import Queue

        self.conn = redis.Redis.from_url(redis_url)
        self.queue = Queue(FLOOR_QUEUE, connection=self.conn)

    def _run(self, text: str) -> tuple[bool, float]:
        t0 = time.perf_counter()
        job = self.queue.enqueue("bench.support.floor_jobs.turn", text, result_ttl=60)
        result = job.latest_result(timeout=int(TURN_DEADLINE_S))
        return result is not None and result.return_value is not None, time.perf_counter() - t0

    async def turn(self, cid: str, text: str) -> Outcome:
        ok, dt = await asyncio.get_running_loop().run_in_executor(None, self._run, text)
        return Outcome(ok, dt, 0, None if ok else "no_result")


# ---------------------------------------------------------------- load shapes


async def open_loop(turn: Turn, convs: list[str], messages: int, rate: float) -> dict[str, Any]:
    """N*M turns at a fixed arrival rate, round-robin over the conversations (no waiting)."""
    tally = Tally()
    total = len(convs) * messages
    tasks: list[asyncio.Task[Outcome]] = []
    lag = 0.0
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag = max(lag, -delay)
        tasks.append(
            asyncio.create_task(turn(convs[i % len(convs)], f"message {i // len(convs)}: where is my order?"))
        )
    sent_s = time.perf_counter() - start
    for o in await asyncio.gather(*tasks):
        tally.add(o)
    wall = time.perf_counter() - start
    return {
        "conversations": len(convs),
        "messages_each": messages,
        "turns": total,
        "target_rate": rate,
        "arrival_rate": round(total / sent_s, 1) if sent_s else None,
        "completion_rate": round(len(tally.latencies) / wall, 1),
        "max_send_lag_ms": round(lag * 1000, 1),
        "latency_ms": harness.latency_ms(tally.latencies),
        "errors": tally.errors,
        "retries": tally.retries,
        "wall_s": round(wall, 2),
    }


async def closed_loop(turn: Turn, convs: list[str], duration: float) -> dict[str, Any]:
    """Each conversation posts its next message as soon as the previous reply arrived."""
    tally = Tally()
    start = time.perf_counter()
    end = start + duration

    async def talk(cid: str) -> None:
        n = 0
        while time.perf_counter() < end:
            tally.add(await turn(cid, f"message {n}: where is my order?"))
            n += 1

    await asyncio.gather(*(talk(c) for c in convs))
    wall = time.perf_counter() - start
    return {
        "conversations": len(convs),
        "turns": len(tally.latencies),
        "turns_per_s": round(len(tally.latencies) / wall, 1),
        "latency_ms": harness.latency_ms(tally.latencies),
        "errors": tally.errors,
        "retries": tally.retries,
        "wall_s": round(wall, 2),
    }


def _progress(message: str) -> None:
    print(f"[chat_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


async def run(args: argparse.Namespace, stack: harness.Stack, base_url: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max(64, max(_ints(args.closed) or [1]) + 16)))
    out: dict[str, Any] = {}
    most = max(_ints(args.convs) + _ints(args.closed) + [1])
    limits = httpx.Limits(max_connections=most + 20, max_keepalive_connections=most + 20)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {stack.api_key}"},
        limits=limits,
        timeout=httpx.Timeout(TURN_DEADLINE_S, connect=10.0),
    ) as client:
        ours = Ours(client, stack.workflow)
        floor = Floor(stack.redis_url)
        # Warm-up (imports, pools, caches in every process); not measured.
        warm = await ours.conversations(4)
        await closed_loop(ours.turn, warm, 1.5)
        await closed_loop(floor.turn, ["-"] * 4, 1.0)

        floor_out: dict[str, Any] = {}
        _progress("floor: open loop")
        floor_out["open_loop"] = await open_loop(floor.turn, ["-"], args.floor_turns, args.rate)
        floor_out["closed_loop"] = {}
        for c in _ints(args.closed):
            _progress(f"floor: closed loop, {c} conversations")
            floor_out["closed_loop"][str(c)] = await closed_loop(floor.turn, ["-"] * c, args.duration)

        ours_out: dict[str, Any] = {"open_loop": {}, "closed_loop": {}}
        for n in _ints(args.convs):
            _progress(f"ours: open loop, {n} conversations x {args.messages} messages")
            convs = await ours.conversations(n)
            ours_out["open_loop"][str(n)] = await open_loop(ours.turn, convs, args.messages, args.rate)
        for c in _ints(args.closed):
            _progress(f"ours: closed loop, {c} conversations")
            convs = await ours.conversations(c)
            ours_out["closed_loop"][str(c)] = await closed_loop(ours.turn, convs, args.duration)
        out["ours"], out["floor"] = ours_out, floor_out
        out["_posted"], out["_uncertain"] = ours.posted, ours.uncertain
    return out


def ratios(ours: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    f_open = floor["open_loop"]["latency_ms"]
    out: dict[str, Any] = {"open_loop_latency": {}, "closed_loop_throughput": {}}
    for n, r in ours["open_loop"].items():
        lat = r["latency_ms"]
        out["open_loop_latency"][n] = {
            q: round(lat[q] / f_open[q], 2) if f_open[q] else None for q in ("p50", "p95", "p99")
        }
    for c, r in ours["closed_loop"].items():
        f = floor["closed_loop"].get(c, {}).get("turns_per_s")
        out["closed_loop_throughput"][c] = round(r["turns_per_s"] / f, 3) if f else None
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100.0, help="open-loop arrival rate, turns/s")
    ap.add_argument("--convs", default="10,50,200", help="open loop: concurrent conversations per run")
    ap.add_argument("--messages", type=int, default=5, help="open loop: messages per conversation")
    ap.add_argument("--closed", default="20,200", help="closed loop: concurrent conversations per run")
    ap.add_argument("--duration", type=float, default=6.0, help="closed loop: seconds per run")
    ap.add_argument("--floor-turns", type=int, default=500, help="floor open loop: turns")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (ours and the floor's)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    result: dict[str, Any] = {"bench": "chat_load", "machine": harness.machine()}
    with harness.use_stack() as stack:
        procs = harness.Procs(stack.child_env())
        try:
            port = harness.free_port()
            procs.start("api", "-m", "bench.support.serve_api", "--port", str(port))
            for _ in range(args.workers):
                procs.start("worker", "-m", "runtime.cli", "worker")
                procs.start(
                    "floor",
                    "-m",
                    "rq.cli",
                    "worker",
                    "-q",
                    "-w",
                    "rq.worker.SimpleWorker",
                    "-u",
                    stack.redis_url,
                    FLOOR_QUEUE,
                )
            harness.wait_workers(stack.redis_url, args.workers * 2)
            _wait_http(f"http://127.0.0.1:{port}/api/v1/health")
            out = asyncio.run(run(args, stack, f"http://127.0.0.1:{port}"))
            drained = harness.wait_drained(stack.db.admin, stack.tenant_id, 60)
            out["ours"]["worker_side_all_phases"] = worker_side(stack.redis_url)
            check = harness.verify_turns(
                stack.db.admin, stack.tenant_id, out.pop("_posted"), out.pop("_uncertain")
            )
        finally:
            procs.stop()
            result["logs"] = str(procs.logdir)
    result.update(
        {
            "setup": {
                "workflow": "bench.support.harness.BENCH_WORKFLOW (5 nodes, offline LLM)",
                "database": "PostgreSQL, app role (RLS)",
                "redis": stack.redis_url,
                "worker_processes": args.workers,
                "api": "uvicorn, 1 process",
                "limits": "business plan, rate limits and concurrency cap raised out of reach",
            },
            "ours": out["ours"],
            "floor": {
                "what": "raw RQ SimpleWorker x2 + raw LangGraph 5 nodes, no API/events/DB",
                **out["floor"],
            },
            "ratio_ours_to_floor": ratios(out["ours"], out["floor"]),
            "turns_check": {"drained": drained, **check},
            "budget": _budget(out["ours"], args.rate),
            "wall_s": round(time.perf_counter() - t_start, 1),
        }
    )
    return result


def _budget(ours: dict[str, Any], rate: float) -> dict[str, Any]:
    out: dict[str, Any] = {**BUDGET, "rate": rate}
    for n, r in ours["open_loop"].items():
        lat = r["latency_ms"]
        out[f"met_at_{n}_convs"] = (
            lat["p50"] < BUDGET["open_loop_p50_ms"] and lat["p99"] < BUDGET["open_loop_p99_ms"]
        )
    return out


def worker_side(redis_url: str) -> dict[str, Any]:
    """From RQ's own timestamps of our finished turn jobs: queue wait and run time, in ms."""
    import redis
    from rq.job import Job
    from rq.registry import FinishedJobRegistry
    from rq.serializers import JSONSerializer

    from runtime.jobs import queue_names

    conn = redis.Redis.from_url(redis_url)
    wait: list[float] = []
    run_: list[float] = []
    for q in queue_names():
        ids = FinishedJobRegistry(q, connection=conn, serializer=JSONSerializer).get_job_ids()
        for i in range(0, len(ids), 500):
            for job in Job.fetch_many(ids[i : i + 500], connection=conn, serializer=JSONSerializer):
                if job and job.enqueued_at and job.started_at and job.ended_at:
                    wait.append((job.started_at - job.enqueued_at).total_seconds())
                    run_.append((job.ended_at - job.started_at).total_seconds())
    return {"queue_wait_ms": harness.latency_ms(wait), "job_run_ms": harness.latency_ms(run_)}


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g}s")
        time.sleep(0.2)


def summary(result: dict[str, Any]) -> str:
    o, f, c = result["ours"], result["floor"], result["turns_check"]
    parts = [
        f"open@{r['target_rate']:g}/s N={n}: p50 {lat['p50']:.0f} p99 {lat['p99']:.0f} ms"
        for n, r in o["open_loop"].items()
        if (lat := r["latency_ms"])
    ]
    parts += [
        f"closed C={k}: {r['turns_per_s']:.0f}/s (floor {f['closed_loop'][k]['turns_per_s']:.0f}/s)"
        for k, r in o["closed_loop"].items()
        if k in f["closed_loop"]
    ]
    return "chat_load: " + "; ".join(parts) + f"; lost {c['lost']} duplicated {c['duplicated']}"


if __name__ == "__main__":
    res = main()
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")
    print(summary(res), file=sys.stderr)
