"""The chat test panel in a real browser: chat with the customer_support draft through the real
runtime (embedded queue worker), see the router's decision and the routed path lit on the
canvas, save the chat as a conversation test, start a new conversation.

One prod server for the module on its own SQLite database, seeded with the demo tenant (every
shipped workflow published); the browser signs in as the demo owner once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Locator, Page, expect

from builder import conversation_tests as ct
from core.db import migrate

from .conftest import ARTIFACTS, ROOT, _free_port, _reflex_env, _stop, _wait_ready, checked_page, login_state

pytestmark = pytest.mark.e2e
LOAD_MS = 60_000
REPLY_MS = 60_000
EMAIL, PASSWORD = "demo@example.com", "demo-shop-2024!"
SEED = "from runtime.cli_remote import seed_demo; seed_demo()"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, workflows_dir: Path) -> Iterator[tuple[str, str]]:
    """(app url, database url)."""
    work = tmp_path_factory.mktemp("chat")
    data = work / "data"
    data.mkdir()
    db_url = f"sqlite:///{data / 'flowdesk.db'}"
    migrate(db_url)
    seed_env = {k: v for k, v in os.environ.items() if k not in ("MIGRATION_DATABASE_URL", "REDIS_URL")}
    seed_env.update(DATABASE_URL=db_url, FLOWDESK_DATA_DIR=str(data))
    subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=seed_env, check=True, timeout=120)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _reflex_env(workflows_dir, work)
    for name in ("MIGRATION_DATABASE_URL", "SMTP_URL", "FLOWDESK_ENV", "REDIS_URL"):
        env.pop(name, None)  # no REDIS_URL: the embedded queue worker answers, as in `make run`
    env.update(DATABASE_URL=db_url, FLOWDESK_DATA_DIR=str(data), FLOWDESK_PUBLIC_URL=url)
    cmd = [str(Path(sys.executable).parent / "reflex"), "run", "--env", "prod", "--single-port"]
    cmd += ["--frontend-port", str(port), "--backend-host", "127.0.0.1"]
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "reflex-chat.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_ready(proc, url, log_path)
            yield url, db_url
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def signed_in(server: tuple[str, str], browser: Browser) -> Any:
    return login_state(browser, server[0], EMAIL, PASSWORD, LOAD_MS)


@pytest.fixture
def page(browser: Browser, signed_in: Any) -> Iterator[Page]:
    with checked_page(browser, viewport={"width": 1440, "height": 900}, storage_state=signed_in) as pg:
        yield pg


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chat-{name}.png"))


def card(page: Page, node_id: str) -> Locator:
    return page.locator(f".react-flow__node[data-id='{node_id}'] .fd-card")


def send(page: Page, text: str) -> Locator:
    """Send a message; the bot's answered bubble."""
    before = page.locator(".chat-bubble[data-role='bot']").count()
    page.locator("#chat-input").fill(text)
    page.locator("#chat-input").press("Enter")
    bot = page.locator(".chat-bubble[data-role='bot']").nth(before)
    expect(bot).to_have_attribute("data-pending", "", timeout=REPLY_MS)
    return bot


def stored_tests(db_url: str) -> str | None:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT tests_yaml FROM workflows WHERE slug = 'customer_support'")
            ).scalar_one()
    finally:
        engine.dispose()


def test_chat_routes_lights_the_path_saves_a_case_and_resets(page: Page, server: tuple[str, str]) -> None:
    url, db_url = server
    page.goto(f"{url}/workflows/customer_support/test")
    expect(page.locator("#canvas .react-flow__node").first).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(page.locator("#save-case")).to_be_disabled()
    expect(page.locator("#case-count")).to_contain_text("0 test cases")
    shot(page, "empty")

    # A routed turn: the router's decision, and the path (understand -> the track_order subflow) lit.
    bot = send(page, "where is my order?")
    expect(bot).to_contain_text("What is your order number?")
    expect(bot).to_contain_text("track_order")
    expect(page.get_by_test_id("route-intent")).to_have_text("track_order")
    expect(page.get_by_test_id("route-layer")).not_to_have_text("-")
    expect(page.get_by_test_id("route-tier")).not_to_have_text("-")
    expect(page.get_by_test_id("route-confidence")).to_contain_text("%")
    for node in ("start", "understand", "to_track_order"):
        expect(card(page, node)).to_have_attribute("data-lit", "1")
    for node in ("hello", "to_faq_handling", "agent"):
        expect(card(page, node)).to_have_attribute("data-lit", "")
    expect(page.locator("#turn-path")).to_contain_text("track_order/find_order")
    rows = page.locator("#trace-nodes .trace-row")
    expect(rows.first).to_be_visible()
    expect(page.locator("#trace-nodes .trace-row[data-node='understand']")).to_contain_text("classify")
    expect(page.locator("#trace-nodes .trace-row[data-node='understand']")).to_contain_text(" ms")
    shot(page, "routed")

    # Save the chat as a test case: stored beside the workflow, counted on the page.
    page.locator("#save-case").click()
    page.locator("#case-name").fill("asks for the order number")
    page.locator("#confirm-save-case").click()
    expect(page.locator("#case-count")).to_contain_text("1 test case")
    expect(page.locator("#save-message")).to_contain_text("asks for the order number")
    shot(page, "saved")
    text = stored_tests(db_url)
    assert text is not None
    tests = ct.load_tests(text)
    (case,) = tests.cases
    assert case.name == "asks for the order number"
    assert case.turns[0].user == "where is my order?"
    assert case.turns[0].expect.intent == "track_order"
    assert "track_order/find_order" in case.turns[0].expect.path_includes

    # New conversation: the chat, the trace and the lit path are gone; a greeting starts afresh.
    page.locator("#reset-chat").click()
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(page.locator(".fd-card[data-lit='1']")).to_have_count(0)
    expect(page.locator("#route-card")).to_have_count(0)
    bot = send(page, "hi there")
    expect(bot).to_contain_text("I'm the shop's assistant")
    expect(page.get_by_test_id("route-intent")).to_have_text("greeting")
    expect(card(page, "hello")).to_have_attribute("data-lit", "1")
    expect(card(page, "to_track_order")).to_have_attribute("data-lit", "")
    shot(page, "greeting")


def test_clicking_an_earlier_reply_shows_its_trace(page: Page, server: tuple[str, str]) -> None:
    url, _ = server
    page.goto(f"{url}/workflows/customer_support/test")
    expect(page.locator("#chat-empty")).to_be_visible(timeout=LOAD_MS)
    first = send(page, "hello")
    send(page, "where is my order?")
    expect(page.get_by_test_id("route-intent")).to_have_text("track_order")
    first.click()
    expect(page.get_by_test_id("route-intent")).to_have_text("greeting")
    expect(card(page, "hello")).to_have_attribute("data-lit", "1")


def test_unknown_workflow_says_so(page: Page, server: tuple[str, str]) -> None:
    page.goto(f"{server[0]}/workflows/nope/test")
    expect(page.locator("#chat-load-error")).to_contain_text("nope", timeout=LOAD_MS)
