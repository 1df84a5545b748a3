"""The operator commands: ``flowdesk dlq``, ``handoffs``, ``replay`` (turn and episode), ``purge``.

They run through ``runtime.cli.main`` against a migrated SQLite / PostgreSQL with the embedded
queue (the commands talk to whatever ``REDIS_URL`` names; the DLQ's real-Redis path is covered
by tests/runtime/test_dlq.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from core.db import get_engine
from runtime import jobs
from runtime.cli import main
from runtime.events import append_events, turn_events
from tests.app.conftest import Api, client, engine, memory_limiter, tenant  # noqa: F401
from tests.app.test_api_chat import GREETER
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.queue_fixtures import eventually, queue_backend  # noqa: F401
from tests.runtime.test_dlq import fail_a_turn, greeter, start  # noqa: F401
from tests.runtime.test_episodes import CHANGED

#: The queue commands talk to whatever REDIS_URL names; the embedded one is enough here.
embedded = pytest.mark.parametrize("queue_backend", ["embedded"], indirect=True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def say(api: Api, cid: str, text: str) -> dict:
    r = api.post(f"/conversations/{cid}/messages", json={"text": text})
    assert r.status_code == 200, r.text
    return dict(r.json())


@embedded
def test_dlq_commands_list_show_retry_and_drop(greeter, capsys):  # noqa: F811
    api = greeter()
    _cid, turn_id, _wf = fail_a_turn(api)
    job = jobs.job_id(turn_id)

    code, out, _ = run(capsys, "dlq", "list")
    assert code == 0
    row = next(ln for ln in out.splitlines() if job in ln)
    assert api.tenant_id in row and "flowdesk-high" in row and "no longer exists" in row
    code, out, _ = run(capsys, "dlq", "list", "--json")
    assert [(d["job_id"], d["tenant_id"]) for d in json.loads(out)] == [(job, api.tenant_id)]

    code, out, _ = run(capsys, "dlq", "show", job)
    assert code == 0 and "Traceback" in out and "turn_failed" in out
    assert f"turn:       {turn_id} (#1, failed)" in out
    shown = json.loads(run(capsys, "dlq", "show", turn_id, "--json")[1])
    assert shown["turn"]["status"] == "failed" and shown["conversation"]["status"] == "waiting_human"

    code, _out, err = run(capsys, "dlq", "show", "turn-nope")
    assert code == 1 and "dead_letter_not_found" in err
    assert run(capsys, "dlq", "retry")[0] == 2  # no JOB

    # Retry without a fix: it fails again and comes back; then drop it.
    code, out, _ = run(capsys, "dlq", "retry", job)
    assert code == 0 and out.startswith(f"requeued {job}")
    eventually(lambda: json.loads(run(capsys, "dlq", "list", "--json")[1]))
    code, out, _ = run(capsys, "dlq", "drop", job)
    assert code == 0 and "the turn stays failed" in out
    assert run(capsys, "dlq", "list")[1].strip() == "no dead letters"


@embedded
def test_handoffs_lists_every_tenants_queue_or_one_tenants(greeter, capsys):  # noqa: F811
    a, b = greeter("A"), greeter("B")
    cid, _turn, _wf = fail_a_turn(a)
    rows = json.loads(run(capsys, "handoffs", "--json")[1])
    assert [(r["tenant_id"], r["id"]) for r in rows] == [(a.tenant_id, cid)]
    assert rows[0]["last_messages"][-1]["text"] == "hello"
    assert json.loads(run(capsys, "handoffs", "--tenant", b.tenant_id, "--json")[1]) == []
    code, out, _ = run(capsys, "handoffs")
    assert code == 0 and cid in out and "queue=support" in out and "runtime_error" in out
    assert "#1 user> hello" in out


@embedded
def test_replay_rebuilds_a_stored_turn_from_its_events(greeter, capsys):  # noqa: F811
    api = greeter()
    cid = start(api)
    say(api, cid, "hello")
    turn = say(api, cid, "I am Alice")
    code, out, _ = run(capsys, "replay", turn["turn_id"])
    assert code == 0
    assert f"turn {turn['turn_id']} of tenant {api.tenant_id}" in out
    assert "path:   ask_name -> hi" in out and "reply:  Nice to meet you, Alice!" in out
    assert "usage:  0 LLM call(s)" in out
    trace = json.loads(run(capsys, "replay", turn["turn_id"], "--tenant", api.tenant_id, "--json")[1])
    assert trace["path"] == turn["path"] and trace["replies"] == [turn["reply"]]
    code, _out, err = run(capsys, "replay", "no-such-turn")
    assert code == 1 and "turn_not_found" in err
    assert run(capsys, "replay")[0] == 2


@embedded
def test_episode_replay_diffs_a_changed_workflow_and_passes_an_identical_one(greeter, capsys, tmp_path):  # noqa: F811
    api = greeter()
    cid = start(api)
    say(api, cid, "hello")
    say(api, cid, "I am Dana")
    same, changed = tmp_path / "same.yaml", tmp_path / "changed.yaml"
    same.write_text(GREETER)
    changed.write_text(CHANGED)

    code, out, _ = run(capsys, "replay", "--conversation", cid, "--workflow", str(same))
    assert code == 0, out
    assert out.splitlines()[-1] == "no differences"

    code, out, _ = run(capsys, "replay", "--conversation", cid, "--workflow", str(changed))
    assert code == 1
    lines = out.splitlines()
    assert "greeter v1 (recorded)" in lines[0]
    assert "turn 2: user> I am Dana" in lines
    marked = [ln for ln in lines if ln.startswith("!")]
    assert len(marked) == 1 and "Nice to meet you, Dana!" in marked[0] and "Welcome back, Dana." in marked[0]
    assert lines[-1] == "1 of 2 turn(s) differ"

    report = json.loads(run(capsys, "replay", "--conversation", cid, "--workflow", str(changed), "--json")[1])
    assert [(d["seq"], d["field"]) for d in report["differences"]] == [(2, "reply")]
    assert run(capsys, "replay", "--conversation", cid)[0] == 2  # --workflow missing
    code, _out, err = run(capsys, "replay", "--conversation", "nope", "--workflow", str(same))
    assert code == 1 and "conversation_not_found" in err


def test_purge_deletes_what_the_dry_run_counted(tenant: Callable[..., Api], capsys):  # noqa: F811
    free = tenant("Free", plan="free")  # 7 days of retention
    now = datetime.now(UTC)
    cid = uuid.uuid4().hex
    old = [{"seq": 1, "type": "turn_started", "ts": (now - timedelta(days=30)).timestamp()}]
    new = [{"seq": 1, "type": "turn_started", "ts": now.timestamp()}]
    append_events(get_engine(), free.tenant_id, cid, "t-old", old)
    append_events(get_engine(), free.tenant_id, cid, "t-new", new)

    counts = json.loads(run(capsys, "purge", "--dry-run", "--json")[1])
    assert counts[free.tenant_id] == {"run_events": 1, "checkpoint_writes": 0, "checkpoints": 0}
    assert len(turn_events(get_engine(), free.tenant_id, "t-old")) == 1  # nothing deleted
    code, out, _ = run(capsys, "purge")
    assert code == 0 and f"{free.tenant_id}: deleted 1 event(s)" in out
    assert turn_events(get_engine(), free.tenant_id, "t-old") == []
    assert len(turn_events(get_engine(), free.tenant_id, "t-new")) == 1
    assert json.loads(run(capsys, "purge", "--dry-run", "--json")[1])[free.tenant_id]["run_events"] == 0
