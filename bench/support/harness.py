"""Shared setup for the runtime benches (bench/chat_load.py, bench/crash.py). Loopback only.

* :func:`fresh_database`: a new PostgreSQL database owned by ``flowdesk_owner``, migrated to head,
  served to the runtime as ``flowdesk_app`` (RLS live), dropped afterwards. The same roles as the
  tests (tests/db_fixtures.py); the bench does not import from tests/.
* :func:`use_stack`: point this process's settings at that database and a private Redis database
  (flushed), then make a business-plan tenant, an admin API key and a published workflow.
* :func:`raise_plan_limits`: the business plan's per-minute rate limits, monthly messages and
  concurrent-turn cap become unreachable in this process (and in ``bench.support.serve_api``), so the
  benches measure the runtime rather than the limiter. The limiter itself still runs (one Redis
  script per request): only its numbers change.
* :class:`Procs`: the child processes a bench starts (workers, the API), stopped by their pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
#: A Redis database of the benches' own (flushed before and after a run): db 11 of the test server.
REDIS_URL = os.environ.get("BENCH_REDIS_URL") or (
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/11"
)
OWNER_ROLE, APP_ROLE, ROLE_PASSWORD = "flowdesk_owner", "flowdesk_app", "flowdesk-test"

#: Five nodes like the research floor (research/runtime-baseline.md §4), with the offline LLM.
BENCH_WORKFLOW = """\
version: 1
id: bench
name: Bench
nodes:
  - id: start
    type: start
  - id: topic
    type: set
    config:
      values: {topic: "{{ message }}"}
  - id: customer
    type: set
    config:
      values: {customer: bench}
  - id: answer
    type: llm
    config:
      prompt: You are a friendly support agent. Answer in one sentence.
      tier: cheap
      max_tokens: 60
  - id: done
    type: set
    config:
      values: {answered: "yes"}
edges:
  - {from: start, to: topic}
  - {from: topic, to: customer}
  - {from: customer, to: answer}
  - {from: answer, to: done}
"""


@dataclass
class Db:
    name: str
    admin_url: str
    owner_url: str
    app_url: str
    #: Superuser on the bench database: counts across tenants (RLS does not apply). Checks only.
    admin: Engine


@dataclass
class Stack:
    db: Db
    redis_url: str
    tenant_id: str
    owner_id: str
    api_key: str
    workflow: str

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "MIGRATION_DATABASE_URL"}
        env.update(DATABASE_URL=self.db.app_url, REDIS_URL=self.redis_url, PYTHONPATH=str(ROOT))
        return env


def _url(role: str | None, database: str) -> str:
    from core.db import normalize_url

    url = make_url(normalize_url(ADMIN_URL)).set(database=database)
    if role is not None:
        url = url.set(username=role, password=ROLE_PASSWORD)
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_database(prefix: str = "fd_bench") -> Iterator[Db]:
    from core.db import make_engine, migrate, normalize_url

    admin = make_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        for role in (OWNER_ROLE, APP_ROLE):
            if not conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
                with contextlib.suppress(sa.exc.DBAPIError):  # created concurrently by a test run
                    conn.execute(
                        sa.text(
                            f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE '
                            f"PASSWORD '{ROLE_PASSWORD}'"
                        )
                    )
        conn.execute(sa.text(f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}"'))
    db_admin = None
    try:
        migrate(_url(OWNER_ROLE, name), app_role=APP_ROLE)
        db_admin = make_engine(_url(None, name), pool_size=2)
        yield Db(name, _url(None, name), _url(OWNER_ROLE, name), _url(APP_ROLE, name), db_admin)
    finally:
        if db_admin is not None:
            db_admin.dispose()
        from core.db import dispose_engine

        dispose_engine()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def raise_plan_limits() -> Callable[[], None]:
    """Business plan without reachable limits, in this process (see the module doc); returns the
    function that puts the catalog's own ``get_plan`` back."""
    from tenants import plans

    original = plans.get_plan
    if getattr(original, "bench", False):
        return lambda: None
    unlimited = dataclasses.replace(
        plans.BUSINESS,
        messages_per_month=10**9,
        requests_per_minute=10**9,
        requests_per_minute_per_key=10**9,
        concurrent_turns=10**6,
    )

    def get_plan(name: str) -> plans.Plan:
        plan = original(name)
        return unlimited if plan.name == unlimited.name else plan

    get_plan.bench = True  # type: ignore[attr-defined]
    plans.get_plan = get_plan

    def restore() -> None:
        plans.get_plan = original

    return restore


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


@contextmanager
def use_stack(workflow_yaml: str = BENCH_WORKFLOW, redis_url: str = REDIS_URL) -> Iterator[Stack]:
    """A fresh database + private Redis db, this process pointed at them, a seeded tenant."""
    from builder import service as wfs
    from core.db import dispose_engine, tenant_session
    from core.settings import get_settings
    from runtime import jobs
    from tenants import roles, service
    from tenants.principal import Principal

    restore_plans = raise_plan_limits()
    saved = {k: os.environ.get(k) for k in ("DATABASE_URL", "REDIS_URL", "MIGRATION_DATABASE_URL")}
    try:
        flush_redis(redis_url)
        with fresh_database() as db:
            os.environ.update(DATABASE_URL=db.app_url, REDIS_URL=redis_url)
            os.environ.pop("MIGRATION_DATABASE_URL", None)
            get_settings.cache_clear()
            dispose_engine()
            jobs.reset_runner()
            tenant, owner = service.create_tenant(
                "Bench", f"bench-{uuid.uuid4().hex[:8]}@example.com", plan="business"
            )
            p = Principal(
                tenant.id, "user", owner.id, roles.ROLE_SCOPES["owner"], role="owner", user_id=owner.id
            )
            _info, key = service.create_api_key(p, "bench", ["admin"])
            with tenant_session(tenant.id) as s:
                draft = wfs.save_draft(s, tenant_id=tenant.id, yaml_text=workflow_yaml, author=owner.id)
                wfs.publish(s, tenant_id=tenant.id, slug=draft.row.slug, author=owner.id)
                slug = draft.row.slug
            yield Stack(db, redis_url, tenant.id, owner.id, key, slug)
    finally:
        dispose_engine()
        jobs.reset_runner()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()
        flush_redis(redis_url)
        restore_plans()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Procs:
    """Child processes of one bench run; their output goes to log files in ``logdir``."""

    env: dict[str, str]
    logdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flowdesk-bench-")))
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> subprocess.Popen[Any]:
        log = (self.logdir / f"{name}-{len(self.procs)}.log").open("wb")
        # Our own interpreter and modules with fixed flags.
        p = subprocess.Popen(
            [sys.executable, *args], env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(p)
        return p

    def stop(self, timeout: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.procs.clear()


def wait_workers(redis_url: str, n: int, timeout: float = 90.0, queue: str | None = None) -> None:
    """Until ``n`` RQ workers are registered (optionally on ``queue``)."""
    import redis
    from rq import Worker

    conn = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        workers = Worker.all(connection=conn)
        if queue is not None:
            workers = [w for w in workers if queue in w.queue_names()]
        if len(workers) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(workers)} of {n} workers started within {timeout:g}s")
        time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in seconds]
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 2),
        "p95": round(pct(ms, 95), 2),
        "p99": round(pct(ms, 99), 2),
        "max": round(max(ms), 2) if ms else 0.0,
    }


def verify_turns(
    admin: Engine,
    tenant_id: str,
    posted: list[tuple[str, str]],
    uncertain: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Every posted (conversation_id, idempotency_key) must have exactly one turn row, status done,
    exactly one ``turn_finished`` and one ``reply`` event. Counted in the database (superuser)."""
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT t.id, t.conversation_id, t.idempotency_key, t.status,"
                " (SELECT count(*) FROM run_events e WHERE e.turn_id = t.id AND e.type = 'turn_finished'),"
                " (SELECT count(*) FROM run_events e WHERE e.turn_id = t.id AND e.type = 'reply')"
                " FROM turns t WHERE t.tenant_id = :t"
            ),
            {"t": tenant_id},
        ).all()
    by_key: dict[tuple[str, str | None], list[Any]] = {}
    for r in rows:
        by_key.setdefault((r[1], r[2]), []).append(r)
    lost: list[dict[str, Any]] = []
    duplicated: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}
    replies: dict[str, int] = {}
    for key in posted:
        found = by_key.get(key, [])
        if not found:
            lost.append({"conversation_id": key[0], "idempotency_key": key[1], "why": "no turn row"})
            continue
        if len(found) > 1:
            duplicated.append({"key": list(key), "turn_ids": [r[0] for r in found], "why": "turn rows"})
        for r in found:
            statuses[r[3]] = statuses.get(r[3], 0) + 1
            replies[str(r[5])] = replies.get(str(r[5]), 0) + 1
            if r[4] == 0 or r[3] == "queued":
                lost.append({"turn_id": r[0], "status": r[3], "turn_finished": r[4], "why": "unfinished"})
            elif r[4] > 1 or r[5] > 1:
                duplicated.append(
                    {"turn_id": r[0], "turn_finished": r[4], "replies": r[5], "why": "events twice"}
                )
    known = set(posted) | set(uncertain or [])
    unposted = [r[0] for r in rows if (r[1], r[2]) not in known]
    return {
        "posted": len(posted),
        "turn_rows": len(rows),
        "statuses": statuses,
        "reply_events_per_turn": replies,
        "lost": len(lost),
        "duplicated": len(duplicated) + len(unposted),
        "lost_detail": lost[:20],
        "duplicated_detail": (duplicated + [{"turn_id": t, "why": "not posted"} for t in unposted])[:20],
    }


def queued_turns(admin: Engine, tenant_id: str) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM turns WHERE tenant_id = :t AND status = 'queued'"),
                {"t": tenant_id},
            ).scalar_one()
        )


def wait_drained(admin: Engine, tenant_id: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while queued_turns(admin, tenant_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def machine() -> dict[str, Any]:
    import platform

    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
