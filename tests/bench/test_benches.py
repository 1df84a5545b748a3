"""The runtime benches run end to end with tiny parameters: JSON shape and correctness only.

Each bench runs as its own process (it starts workers and an API of its own, on a fresh database
and a private Redis database, 12 here so a manual run on 11 is left alone). Nothing here asserts a
timing: lost and duplicated turns must be 0, every turn finished exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REDIS_URL

pytestmark = [pytest.mark.slow, pytest.mark.pg, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
BENCH_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/12"


def run_bench(module: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REDIS_URL": BENCH_REDIS_URL}
    proc = subprocess.run(  # our interpreter, our module, fixed flags
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_chat_load_counts_every_turn_once() -> None:
    out = run_bench(
        "bench.chat_load",
        *("--rate", "20", "--convs", "3", "--messages", "3", "--closed", "2"),
        *("--duration", "1", "--floor-turns", "10"),
    )
    assert out["bench"] == "chat_load"
    opened = out["ours"]["open_loop"]["3"]
    assert opened["turns"] == 9
    assert opened["errors"] == {}
    assert set(opened["latency_ms"]) == {"n", "p50", "p95", "p99", "max"}
    assert opened["latency_ms"]["n"] == 9
    assert out["ours"]["closed_loop"]["2"]["turns"] >= 2  # each conversation got at least one reply
    assert out["floor"]["open_loop"]["latency_ms"]["n"] == 10
    assert set(out["ratio_ours_to_floor"]) == {"open_loop_latency", "closed_loop_throughput"}
    check = out["turns_check"]
    assert check["drained"] is True
    assert check["lost"] == 0, check["lost_detail"]
    assert check["duplicated"] == 0, check["duplicated_detail"]
    assert check["turn_rows"] == check["posted"] >= 9 + 2
    assert check["statuses"] == {"done": check["posted"]}
    assert check["reply_events_per_turn"] == {"1": check["posted"]}


def test_crash_loses_and_duplicates_nothing() -> None:
    out = run_bench(
        "bench.crash", *("--turns", "30", "--convs", "6", "--rate", "10", "--kills", "3", "--seed", "3")
    )
    assert out["bench"] == "crash"
    assert out["kills"] >= 1
    assert out["turns"] == out["posted"] == 30
    assert out["done"] + out["failed"] == 30
    assert out["queued_at_end"] == 0
    assert out["lost"] == 0, out["lost_detail"]
    assert out["duplicated"] == 0, out["duplicated_detail"]
    assert out["replies_per_turn"] == {"1": 30}
    assert out["turn_finished_per_turn"] == {"1": 30}
    assert len(out["kill_log"]) == out["kills"]
