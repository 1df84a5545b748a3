"""Browser tests against the real app: ``reflex run --env prod`` + Debian Chromium + Playwright.

Why a subprocess and not ``reflex.testing.AppHarness``: it runs exactly the documented production
command (one port for UI, websocket and ``/api``) and needs no extra test-only packages. The build
goes to a private web directory (``REFLEX_WEB_WORKDIR``), so a ``make run`` or a second test
session in the same checkout is never disturbed; with bun's package cache warm that costs
about 11-16 s per session (22 s with a cold cache), once.

The app reads its workflows from a temporary copy of ``workflows/`` (``FLOWDESK_WORKFLOWS_DIR``)
plus one deliberately broken file, so both badge states are on the page; a small valid workflow
is added when nothing is shipped yet. The test compares the page with ``builder.catalog``'s own
answer for that directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
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
START_TIMEOUT_S = 240.0

FALLBACK_WORKFLOW = """\
version: 1
id: e2e_hello
name: Hello (e2e)
description: Greets the user and ends.
nodes:
  - id: start
    type: start
  - id: hello
    type: reply
    config:
      text: Hello!
  - id: done
    type: end
edges:
  - {from: start, to: hello}
  - {from: hello, to: done}
"""
#: Fails to load (unknown top-level key), whatever the graph rules are.
BROKEN_WORKFLOW = """\
version: 1
id: zz_broken
name: Broken on purpose
nodes:
  - id: start
    type: start
colour: red
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reflex_env(workflows_dir: Path, work: Path) -> dict[str, str]:
    """The same switches as scripts/env.sh, so the suite also runs outside ``make``."""
    env = dict(os.environ)
    bins = [str(Path(sys.executable).parent), str(ROOT / "tools" / "node_modules" / ".bin")]
    env["PATH"] = os.pathsep.join([*bins, env.get("PATH", "")])
    env.setdefault("REFLEX_USE_SYSTEM_BUN", "1")
    env.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    env.setdefault("REFLEX_CHECK_LATEST_VERSION", "0")
    if "NPM_CONFIG_REGISTRY" not in env and shutil.which("npm"):
        out = subprocess.run(
            ["npm", "config", "get", "registry"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            env["NPM_CONFIG_REGISTRY"] = out.stdout.strip()
    env["FLOWDESK_WORKFLOWS_DIR"] = str(workflows_dir)
    env["REFLEX_WEB_WORKDIR"] = str(work / ".web")
    env["REFLEX_STATES_WORKDIR"] = str(work / ".states")
    return env


@pytest.fixture(scope="session")
def workflows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("workflows")
    shipped = sorted((ROOT / "workflows").glob("*.yaml"))
    for f in shipped:
        shutil.copy(f, d / f.name)
    if not shipped:
        canonical = ROOT / "tests" / "fixtures" / "canonical.yaml"
        if canonical.exists():
            shutil.copy(canonical, d / "canonical.yaml")
        else:
            (d / "e2e_hello.yaml").write_text(FALLBACK_WORKFLOW)
    (d / "zz_broken.yaml").write_text(BROKEN_WORKFLOW)
    return d


@pytest.fixture(scope="session")
def app_url(workflows_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Build and serve the app in prod mode on a free port; stop its whole process group after."""
    bun = ROOT / "tools" / "node_modules" / ".bin" / "bun"
    if not bun.exists():
        pytest.fail(f"{bun} is missing: run `make test` (or scripts/setup.sh) first", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "reflex-prod.log"
    port = _free_port()
    cmd = [
        str(Path(sys.executable).parent / "reflex"),
        "run",
        "--env",
        "prod",
        "--single-port",
        "--frontend-port",
        str(port),
        "--backend-host",
        "127.0.0.1",
    ]
    url = f"http://127.0.0.1:{port}"
    work = tmp_path_factory.mktemp("reflex")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=_reflex_env(workflows_dir, work),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: teardown stops granian's workers too
        )
        try:
            _wait_ready(proc, url, log_path)
            yield url
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)  # ~150 MB of node_modules


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"reflex exited with {proc.returncode}:\n{_tail(log_path)}", pytrace=False)
        try:
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200 and (
                httpx.get(url + "/", timeout=5).status_code == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"app not ready at {url} after {START_TIMEOUT_S:.0f}s:\n{_tail(log_path)}", pytrace=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of our own group (server workers)
    proc.wait(10)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@contextlib.contextmanager
def checked_page(browser: Any, **context: Any) -> Iterator[Any]:
    """A page in a fresh browser context; the test fails on any uncaught error in the page."""
    ctx = browser.new_context(**context)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert errors == [], errors


def login_state(browser: Any, base_url: str, email: str, password: str, timeout_ms: int) -> Any:
    """Log in through the /login form; the storage state (session cookie) to start pages with."""
    import re

    from playwright.sync_api import expect

    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(base_url + "/login")
    expect(page.locator("#login-form")).to_be_visible(timeout=timeout_ms)
    page.locator("#login-form [name=email]").fill(email)
    page.locator("#login-form [name=password]").fill(password)
    page.locator("#login-submit").click()
    expect(page).to_have_url(re.compile(r".*/workflows/?$"), timeout=timeout_ms)
    state = ctx.storage_state()
    ctx.close()
    return state


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1360, "height": 860})  # type: ignore[attr-defined]
    yield ctx.new_page()
    ctx.close()
