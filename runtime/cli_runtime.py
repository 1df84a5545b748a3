"""Runtime operator commands: ``flowdesk worker`` (and, beside it, the queue's other commands).

* ``flowdesk worker [--queues high,default,low] [--burst] [--processes N]``: non-forking turn
  workers (runtime.worker.TurnWorker) on ``REDIS_URL`` and ``DATABASE_URL``. ``--processes N``
  supervises N worker processes and restarts any that dies (a SIGKILLed worker's turn is retried
  by the others' reaper within seconds). Any number of machines can run workers on one Redis.

Exit codes: 0 ok, 1 refused, 2 usage/configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _queues(text: str | None) -> list[str]:
    from runtime import jobs

    if not text:
        return jobs.queue_names()
    names = [q.strip() for q in text.split(",") if q.strip()]
    out = []
    for q in names:
        name = q if q.startswith(jobs.QUEUE_PREFIX) else jobs.QUEUE_PREFIX + q
        if name not in jobs.queue_names():
            raise ValueError(f"unknown queue {q!r}; expected some of {', '.join(jobs.PRIORITIES)}")
        out.append(name)
    return out


def cmd_worker(args: argparse.Namespace) -> int:
    from core.settings import get_settings

    settings = get_settings()
    if not settings.REDIS_URL:
        _err(
            "flowdesk worker needs REDIS_URL (the embedded default runs its worker inside the app: "
            "`make run`)"
        )
        return EXIT_USAGE
    try:
        queues = _queues(args.queues)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.processes > 1:
        return _supervise(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from runtime import jobs, worker

    jobs.get_runner()  # preload: engine, router, embedder, DB pool, before the first job
    worker.requeue_orphans(settings)
    w = worker.make_worker(settings, queues)
    print(f"flowdesk worker {w.name} (pid {os.getpid()}) on {', '.join(queues)}", flush=True)
    w.work(burst=args.burst, with_scheduler=False, logging_level="INFO" if args.verbose else "WARNING")
    return EXIT_OK


def _supervise(args: argparse.Namespace) -> int:
    """Run N ``flowdesk worker`` processes; restart any that exits until we are stopped."""
    cmd = [sys.executable, "-m", "runtime.cli", "worker"]
    if args.queues:
        cmd += ["--queues", args.queues]
    if args.burst:
        cmd.append("--burst")
    if args.verbose:
        cmd.append("--verbose")
    procs: dict[int, subprocess.Popen[Any]] = {}
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # Our own interpreter and module with fixed flags: nothing from outside reaches the command.
    def spawn() -> subprocess.Popen[Any]:
        return subprocess.Popen(cmd)  # noqa: S603

    for i in range(args.processes):
        procs[i] = spawn()
    while procs:
        time.sleep(0.5)
        for i, p in list(procs.items()):
            code = p.poll()
            if code is None:
                continue
            if stopping or (args.burst and code == 0):
                del procs[i]
            else:
                print(f"worker {p.pid} exited with {code}; restarting", file=sys.stderr, flush=True)
                procs[i] = spawn()
    return EXIT_OK


def register(sub: Any) -> None:
    s = sub.add_parser("worker", help="run turn workers on REDIS_URL (non-forking RQ workers)")
    s.add_argument("--queues", help="comma-separated priorities to serve (default: high,default,low)")
    s.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    s.add_argument("--processes", type=int, default=1, help="supervise N worker processes")
    s.add_argument("-v", "--verbose", action="store_true", help="log every job")
    s.set_defaults(fn=cmd_worker)
