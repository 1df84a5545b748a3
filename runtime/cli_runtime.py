"""Runtime operator commands: ``flowdesk worker`` (and, beside it, the queue's other commands).

* ``flowdesk worker [--queues high,default,low] [--burst] [--processes N]``: non-forking turn
  workers (runtime.worker.TurnWorker) on ``REDIS_URL`` and ``DATABASE_URL``. ``--processes N``
  supervises N worker processes and restarts any that dies (a SIGKILLed worker's turn is retried
  by the others' reaper within seconds). Any number of machines can run workers on one Redis.
* ``flowdesk dlq list|show JOB|retry JOB|drop JOB [--json]``: dead letters (runtime.dlq), every
  tenant's: the operator runs these on the server.
* ``flowdesk handoffs [--tenant TID] [--json]``: conversations waiting for a human.
* ``flowdesk replay TURN_ID``: a stored turn's trace rebuilt from its events;
  ``flowdesk replay --conversation CID --workflow FILE``: the recorded conversation re-run
  against another workflow version, side by side (exit 1 when replies or routes differ).
* ``flowdesk purge [--dry-run]``: retention now (the workers also run it hourly).

Exit codes: 0 ok, 1 refused (or: an episode replay differs), 2 usage/configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
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


# ---------------------------------------------------------------- operator commands


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _tenant_ids(tenant: str | None) -> list[str]:
    """The given tenant, else every tenant (operator commands run with the system role)."""
    if tenant:
        return [tenant]
    from core.db import system_session, tenant_plans

    with system_session() as s:
        return [tid for tid, _plan in tenant_plans(s)]


def _fail(exc: Exception) -> int:
    from core.errors import ServiceError

    if isinstance(exc, ServiceError):
        _err(f"{exc.code}: {exc.message}")
        return EXIT_FAIL
    raise exc


def cmd_dlq(args: argparse.Namespace) -> int:
    from core.errors import ServiceError
    from runtime import dlq

    try:
        if args.action == "list":
            letters = dlq.list_dead()
            if args.json:
                _print_json([d.to_dict() for d in letters])
                return EXIT_OK
            if not letters:
                print("no dead letters")
                return EXIT_OK
            print(f"{'JOB':<40} {'TENANT':<32} {'QUEUE':<16} {'FAILED AT':<20} ERROR")
            for d in letters:
                at = d.failed_at.strftime("%Y-%m-%d %H:%M:%S") if d.failed_at else "-"
                print(f"{d.job_id:<40} {d.tenant_id:<32} {d.queue:<16} {at:<20} {d.error}")
            return EXIT_OK
        if not args.job:
            _err(f"flowdesk dlq {args.action} needs a JOB id (see `flowdesk dlq list`)")
            return EXIT_USAGE
        if args.action == "show":
            out = dlq.show(args.job)
            if args.json:
                _print_json(out)
                return EXIT_OK
            _print_dead_letter(out)
            return EXIT_OK
        done = dlq.retry(args.job) if args.action == "retry" else dlq.drop(args.job)
    except ServiceError as exc:
        return _fail(exc)
    verb = "requeued" if args.action == "retry" else "dropped"
    if args.json:
        _print_json({**done.to_dict(), "action": verb})
    else:
        extra = "" if args.action == "retry" else " (the turn stays failed)"
        print(f"{verb} {done.job_id} (turn {done.turn_id} of tenant {done.tenant_id}){extra}")
    return EXIT_OK


def _print_dead_letter(out: dict[str, Any]) -> None:
    print(f"job:        {out['job_id']}")
    print(f"tenant:     {out['tenant_id']}")
    print(f"queue:      {out['queue']}")
    print(f"failed at:  {out['failed_at'] or '-'}")
    print(f"error:      {out['error']}")
    turn, conv = out.get("turn"), out.get("conversation")
    if turn:
        print(f"turn:       {turn['turn_id']} (#{turn['seq']}, {turn['status']})")
        print(f"message:    {turn['text']}")
        print(f"reply:      {turn['reply']}")
    else:
        print("turn:       (gone)")
    if conv:
        print(f"conversation: {conv['id']} ({conv['workflow']}, {conv['status']})")
    print("events:")
    for ev in out.get("events", []):
        rest = {k: v for k, v in ev.items() if k not in ("seq", "type", "ts")}
        print(f"  {ev['seq']:>3} {ev['type']:<16} {json.dumps(rest, default=str)[:160]}")
    print("traceback:")
    print(out["exc_info"].rstrip() or "  (none recorded)")


def cmd_handoffs(args: argparse.Namespace) -> int:
    from runtime import service as svc

    rows = []
    for tid in _tenant_ids(args.tenant):
        rows += [{"tenant_id": tid, **h} for h in svc.handoffs(tid)]
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("no conversations are waiting for a human")
        return EXIT_OK
    for h in rows:
        ho = h["handoff"] or {}
        print(
            f"{h['id']}  tenant {h['tenant_id']}  {h['workflow']}  queue={ho.get('queue') or '-'} "
            f"priority={ho.get('priority') or '-'}  since {ho.get('at') or '-'}"
        )
        print(f"    reason: {ho.get('reason') or '-'}")
        for m in h["last_messages"]:
            print(f"    #{m['seq']} user> {m['text']}")
            if m["reply"]:
                print(f"        bot> {m['reply']}")
    return EXIT_OK


def _find_owner(kind: str, ident: str, tenant: str | None) -> str | None:
    """The tenant that has this turn/conversation (the operator need not know it)."""
    from core.db import tenant_session
    from runtime.models import Conversation, Turn

    model = Turn if kind == "turn" else Conversation
    for tid in _tenant_ids(tenant):
        with tenant_session(tid) as s:
            row = s.get(model, ident)
            if row is not None and row.tenant_id == tid:
                return tid
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    if args.conversation or args.workflow:
        if not (args.conversation and args.workflow) or args.turn:
            _err("episode replay takes --conversation CID and --workflow FILE (and no TURN_ID)")
            return EXIT_USAGE
        return _replay_episode(args)
    if not args.turn:
        _err("flowdesk replay needs a TURN_ID, or --conversation CID --workflow FILE")
        return EXIT_USAGE
    from core.db import get_engine
    from runtime.events import replay_turn

    tid = _find_owner("turn", args.turn, args.tenant)
    if tid is None:
        _err(f"turn_not_found: no turn {args.turn!r}")
        return EXIT_FAIL
    trace = replay_turn(get_engine(), tid, args.turn)
    if args.json:
        _print_json({"tenant_id": tid, **trace})
        return EXIT_OK
    route = trace["route"] or {}
    print(f"turn {trace['turn_id']} of tenant {tid}{'  (FAILED)' if trace['failed'] else ''}")
    print(f"path:   {' -> '.join(trace['path']) or '-'}")
    if route:
        print(
            f"route:  intent={route.get('intent')} tier={route.get('tier', '-')} "
            f"confidence={route.get('confidence', '-')} via {route.get('method', route.get('source', '-'))}"
        )
    else:
        print("route:  -")
    for text in trace["replies"]:
        print(f"reply:  {text}")
    for c in trace["llm_calls"]:
        print(
            f"llm:    {c.get('node', '-')} model={c.get('model', '-')} tokens={c.get('prompt_tokens', 0)}"
            f"+{c.get('completion_tokens', 0)} cost=${c.get('cost_usd', 0)} {c.get('latency_ms', '-')} ms"
        )
    for c in trace["tool_calls"]:
        print(f"tool:   {json.dumps(c, default=str)[:200]}")
    u = trace["usage"]
    print(
        f"usage:  {u['llm_calls']} LLM call(s), {u['prompt_tokens']}+{u['completion_tokens']} tokens, "
        f"${u['cost_usd']}"
    )
    return EXIT_OK


def _replay_episode(args: argparse.Namespace) -> int:
    import dataclasses

    from core.errors import ServiceError
    from runtime import episodes
    from runtime.cli import _load_valid, local_engine

    tid = _find_owner("conversation", args.conversation, args.tenant)
    if tid is None:
        _err(f"conversation_not_found: no conversation {args.conversation!r}")
        return EXIT_FAIL
    try:
        recorded = episodes.recorded_episode(tid, args.conversation)
    except ServiceError as exc:
        return _fail(exc)
    found = _load_valid(Path(args.workflow))
    if found is None:
        return EXIT_USAGE
    wf, resolve = found
    replayed = episodes.replay_messages(wf, [t.text for t in recorded.turns], engine=local_engine(resolve))
    # Number the replayed turns like the recorded ones (held turns are not in either).
    replayed = [dataclasses.replace(b, seq=a.seq) for a, b in zip(recorded.turns, replayed, strict=True)]
    diffs = episodes.diff_episodes(recorded.turns, replayed)
    if args.json:
        _print_json(
            {
                "conversation_id": recorded.conversation_id,
                "tenant_id": tid,
                "recorded_workflow": recorded.workflow,
                "recorded_version": recorded.version,
                "replayed_workflow": wf.id,
                "recorded": [t.to_dict() for t in recorded.turns],
                "replayed": [t.to_dict() for t in replayed],
                "differences": [d.to_dict() for d in diffs],
            }
        )
    else:
        version = f" v{recorded.version}" if recorded.version else " (draft)"
        print(
            f"conversation {recorded.conversation_id}: {recorded.workflow}{version} (recorded) "
            f"vs {args.workflow} (replayed)"
        )
        print(
            episodes.format_side_by_side(
                recorded.turns, replayed, diffs, labels=("recorded", f"replayed ({wf.id})")
            )
        )
    return EXIT_FAIL if diffs else EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    if args.dry_run:
        from runtime.retention import expired_counts

        counts = expired_counts()
    else:
        from runtime.service import purge_expired

        counts = purge_expired()
    if args.json:
        _print_json(counts)
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    totals = {
        k: sum(c.get(k, 0) for c in counts.values())
        for k in ("run_events", "checkpoints", "checkpoint_writes")
    }
    for tid, c in counts.items():
        if any(c.values()):
            print(
                f"{tid}: {verb} {c['run_events']} event(s), {c['checkpoints']} checkpoint(s), "
                f"{c['checkpoint_writes']} checkpoint write(s)"
            )
    print(
        f"{len(counts)} tenant(s): {verb} {totals['run_events']} event(s), {totals['checkpoints']} "
        f"checkpoint(s), {totals['checkpoint_writes']} checkpoint write(s)"
    )
    return EXIT_OK


def register(sub: Any) -> None:
    s = sub.add_parser("worker", help="run turn workers on REDIS_URL (non-forking RQ workers)")
    s.add_argument("--queues", help="comma-separated priorities to serve (default: high,default,low)")
    s.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    s.add_argument("--processes", type=int, default=1, help="supervise N worker processes")
    s.add_argument("-v", "--verbose", action="store_true", help="log every job")
    s.set_defaults(fn=cmd_worker)

    s = sub.add_parser("dlq", help="dead letters: turns that exhausted their retries (all tenants)")
    s.add_argument("action", choices=("list", "show", "retry", "drop"))
    s.add_argument("job", nargs="?", help="job id (turn-<turn id>) or turn id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_dlq)

    s = sub.add_parser("handoffs", help="conversations waiting for a human")
    s.add_argument("--tenant", help="one tenant id (default: every tenant)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_handoffs)

    s = sub.add_parser("replay", help="a stored turn's trace, or a conversation re-run on another workflow")
    s.add_argument("turn", nargs="?", metavar="TURN_ID")
    s.add_argument("--conversation", metavar="CID", help="episode replay: the recorded conversation")
    s.add_argument("--workflow", metavar="FILE", help="episode replay: the workflow file to run it on")
    s.add_argument("--tenant", help="the tenant id (default: found among all tenants)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_replay)

    s = sub.add_parser("purge", help="delete events and checkpoints older than each plan's retention")
    s.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_purge)
