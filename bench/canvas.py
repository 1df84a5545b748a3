"""The canvas editor in headless Chromium: time to an interactive canvas and the drag-stop round
trip, for generated 50 / 200 / 500-node workflows (JSON output).

Budget (DESIGN.md §8): a 200-node workflow opens in under 2 s. The workflows are
``bench.yaml_compile.generate``'s (conditions, branches, joins) without a layout block, so the
editor lays them out too. The app runs as in production (``reflex run --env prod``) on a fresh
SQLite database with the demo tenant; the browser signs in once.

* ``open_ms``: from ``page.goto`` of ``/workflows/<id>/edit`` until every node card and every
  edge is in the DOM (React Flow draws edges once the cards are measured, so the canvas can be
  dragged and connected from then on); the page, its websocket, the draft load, validation and
  the graph's trip to the browser are all inside it.
* ``drag_ms``: from the mouse-up of a node drag until the page shows the save it caused
  (browser -> Python: ``from_flow``, canonical dump, ``save_draft`` with validation, undo
  history -> browser).

    python -m bench.canvas [--sizes 50 200 500] [--reps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.yaml_compile import generate
from builder.yaml_io import dump

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EMAIL, PASSWORD = "demo@example.com", "demo-shop-2024!"
BUDGET_200_MS = 2000
SEED = """
import sys
from builder import service as wfs
from core.db import migrate, tenant_session
from runtime.cli_remote import seed_demo
migrate()
out = seed_demo(workflow_dir=__import__("pathlib").Path(sys.argv[1]))
with tenant_session(out["tenant_id"]) as s:
    for path in sys.argv[2:]:
        wfs.save_draft(s, tenant_id=out["tenant_id"], yaml_text=open(path).read(), author="bench")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(work: Path, files: list[Path]) -> Iterator[str]:
    """Seed a fresh database and run the prod server on it (its own process group)."""
    data = work / "data"
    data.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MIGRATION_DATABASE_URL", "REDIS_URL", "FLOWDESK_ENV")
    }
    bins = [str(Path(sys.executable).parent), str(ROOT / "tools" / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "")])
    env.setdefault("REFLEX_USE_SYSTEM_BUN", "1")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env.setdefault("REFLEX_CHECK_LATEST_VERSION", "0")
    env.update(
        DATABASE_URL=f"sqlite:///{data / 'flowdesk.db'}",
        FLOWDESK_DATA_DIR=str(data),
        REFLEX_WEB_WORKDIR=str(work / ".web"),
        REFLEX_STATES_WORKDIR=str(work / ".states"),
    )
    empty = work / "none"
    empty.mkdir()  # the demo tenant without the shipped workflows: only the generated ones
    subprocess.run(
        [sys.executable, "-c", SEED, str(empty), *map(str, files)], cwd=ROOT, env=env, check=True, timeout=300
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env["FLOWDESK_PUBLIC_URL"] = url
    cmd = [str(Path(sys.executable).parent / "reflex"), "run", "--env", "prod", "--single-port"]
    cmd += ["--frontend-port", str(port), "--backend-host", "127.0.0.1"]
    log = (work / "reflex.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"reflex exited: {(work / 'reflex.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/ping", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def measure(page: Any, url: str, slug: str, nodes: int, edges: int, reps: int) -> dict[str, Any]:
    opens: list[float] = []
    drags: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        page.goto(f"{url}/workflows/{slug}/edit")
        page.wait_for_function(
            "([n, e]) => document.querySelectorAll('.react-flow__node').length >= n"
            " && document.querySelectorAll('.react-flow__edge').length >= e",
            arg=[nodes, edges],
            timeout=120_000,
        )
        opens.append((time.perf_counter() - t0) * 1000)
        for _ in range(3):
            # A card fully inside the canvas (a wide flow opens zoomed in, centred).
            node_id = page.evaluate(
                """() => {
                  const c = document.querySelector('#canvas').getBoundingClientRect();
                  const inside = [...document.querySelectorAll('.react-flow__node')].filter((n) => {
                    const r = n.getBoundingClientRect();
                    return r.left > c.left + 60 && r.right < c.right - 200 && r.top > c.top + 40
                      && r.bottom < c.bottom - 160;
                  });
                  return inside.length ? inside[0].getAttribute('data-id') : null;
                }"""
            )
            box = page.locator(f".react-flow__node[data-id='{node_id}']").bounding_box()
            status = page.locator("#save-status")
            before = status.get_attribute("data-saves")
            x, y = box["x"] + box["width"] / 2, box["y"] + 12
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 20, y + 10, steps=5)
            page.mouse.move(x + 40, y + 20, steps=5)
            t1 = time.perf_counter()
            page.mouse.up()
            page.wait_for_function(
                "b => document.querySelector('#save-status')?.getAttribute('data-saves') !== b",
                arg=before,
                timeout=60_000,
                polling=5,
            )
            drags.append((time.perf_counter() - t1) * 1000)
    return {"open_ms": stats(opens), "drag_roundtrip_ms": stats(drags)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-canvas-"))
    try:
        shapes: dict[int, tuple[str, int, int]] = {}
        files = []
        for n in args.sizes:
            wf = generate(n).model_copy(update={"id": f"bench_{n}", "name": f"Bench {n}", "layout": {}})
            path = work / f"bench_{n}.yaml"
            path.write_text(dump(wf))
            files.append(path)
            shapes[n] = (wf.id, len(wf.nodes), len(wf.edges))
        with serve(work, files) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            page.goto(url + "/login")
            page.locator("#login-form [name=email]").fill(EMAIL)
            page.locator("#login-form [name=password]").fill(PASSWORD)
            page.locator("#login-submit").click()
            page.wait_for_url("**/workflows**", timeout=120_000)
            # Warm-up: the first visit compiles nothing but loads the JS bundle into the cache.
            measure(page, url, *shapes[args.sizes[0]], reps=1)
            results = []
            for n in args.sizes:
                slug, nodes, edges = shapes[n]
                row: dict[str, Any] = {"nodes": nodes, "edges": edges}
                row.update(measure(page, url, slug, nodes, edges, args.reps))
                if n == 200:
                    row["budget_open_ms"] = BUDGET_200_MS
                    row["within_budget"] = row["open_ms"]["p50"] < BUDGET_200_MS
                results.append(row)
            browser.close()
        print(json.dumps({"bench": "canvas", "cpus": os.cpu_count(), "results": results}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
