"""Failed turns and handoffs in a real browser, against a real failure of the app's own worker.

The app is served like ``test_accounts.serve_app`` (prod build, its own migrated SQLite, embedded
queue: the worker is a thread of the app). The test process shares that SQLite file to seed the
team and to break (and later fix) a conversation's workflow; messages go through the HTTP API, so
the app's worker runs, fails every retry, apologises and files the job in its dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from core.db import make_engine, tenant_session
from runtime.models import Conversation
from tenants import roles
from tenants import service as accounts
from tenants.principal import Principal
from tests.app.test_api_chat import GREETER, HANDOFF

from .conftest import ARTIFACTS
from .test_accounts import LOAD_MS, Served, login, serve_app, shot

pytestmark = pytest.mark.e2e
OWNER = "ops@example.com"
PASSWORD = "correct-Horse-battery-9"
APOLOGY_START = "Sorry, something went wrong"


class Team:
    def __init__(self, served: Served, tenant_id: str, key: str) -> None:
        self.url, self.tenant_id = served.url, tenant_id
        self.http = httpx.Client(base_url=served.url + "/api/v1", headers={"Authorization": f"Bearer {key}"})

    def call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, timeout=60, **kw)
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json()

    def publish(self, yaml_text: str, slug: str) -> None:
        self.call(
            "POST", "/workflows", content=yaml_text.encode(), headers={"Content-Type": "application/yaml"}
        )
        self.call("POST", f"/workflows/{slug}/publish")

    def start(self, slug: str) -> str:
        return str(self.call("POST", "/conversations", json={"workflow_id": slug})["id"])

    def say(self, cid: str, text: str) -> dict[str, Any]:
        return dict(self.call("POST", f"/conversations/{cid}/messages", json={"text": text}))

    def point(self, cid: str, workflow_id: str) -> str:
        """Point the conversation at another workflow id (a deleted one breaks it); the old id."""
        with tenant_session(self.tenant_id) as s:
            conv = s.get(Conversation, cid)
            assert conv is not None
            old, conv.workflow_id = conv.workflow_id, workflow_id
            s.add(conv)
        return old

    def fail_a_turn(self, text: str) -> tuple[str, str, str]:
        cid = self.start("greeter")
        old = self.point(cid, "deleted-workflow")
        out = self.say(cid, text)
        assert out["status"] == "failed" and out["reply"].startswith(APOLOGY_START)
        return cid, out["turn_id"], old


@pytest.fixture(scope="module")
def served(workflows_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    work = tmp_path_factory.mktemp("dead_letters")
    with serve_app(workflows_dir, work, ARTIFACTS / "reflex-dead-letters.log") as s:
        yield s, work / "data" / "flowdesk.db"


@pytest.fixture(scope="module")
def team(served: tuple[Served, Path]) -> Iterator[Team]:
    app, db_file = served
    with pytest.MonkeyPatch.context() as mp:
        engine = make_engine(f"sqlite:///{db_file}")
        mp.setattr("core.db._engine", engine)
        tenant, owner = accounts.create_tenant("Ops Team", OWNER, password=PASSWORD, plan="business")
        p = Principal(tenant.id, "user", owner.id, roles.ROLE_SCOPES["owner"], role="owner", user_id=owner.id)
        _key, secret = accounts.create_api_key(
            p, "e2e", ["admin", "chat", "workflows:write", "workflows:read"]
        )
        t = Team(app, tenant.id, secret)
        t.publish(GREETER, "greeter")
        t.publish(HANDOFF, "human")
        yield t
        engine.dispose()


def signed_in(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1360, "height": 860}).new_page()
    login(page, url, OWNER, PASSWORD)
    expect(page.locator("#user-menu")).to_be_visible(timeout=LOAD_MS)
    return page


def eventually(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout}s: {check}"
        time.sleep(0.2)
    return value


def test_failed_turns_page_lists_retries_and_drops(team: Team, browser: Browser) -> None:
    cid, turn_id, wf_id = team.fail_a_turn("hello there")
    _cid2, turn2, _wf2 = team.fail_a_turn("second broken message")
    page = signed_in(browser, team.url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Failed turns").click()
    table = page.locator("#dead-letters-table")
    expect(table).to_be_visible(timeout=LOAD_MS)
    row = page.locator(f'[data-job="turn-{turn_id}"]')
    expect(row.get_by_test_id("dead-message")).to_have_text("hello there")
    expect(row.get_by_test_id("dead-error")).to_contain_text("no longer exists")
    expect(page.locator(f'[data-job="turn-{turn2}"]')).to_be_visible()
    shot(page, "dead_letters")

    # Fix the cause, retry: the turn is answered and leaves the list.
    team.point(cid, wf_id)
    row.get_by_test_id("retry-dead-letter").click()
    expect(page.get_by_test_id("dead-letters-notice")).to_contain_text("queued again")
    expect(row).to_have_count(0)
    turn = eventually(lambda: (t := team.call("GET", f"/turns/{turn_id}"))["status"] == "done" and t)
    assert turn["reply"] == "What is your name?"

    # Drop asks first; cancel keeps it, confirm removes it (the turn stays failed).
    other = page.locator(f'[data-job="turn-{turn2}"]')
    other.get_by_test_id("drop-dead-letter").click()
    expect(page.get_by_role("alertdialog")).to_be_visible()
    shot(page, "dead_letters_drop_confirm")
    page.get_by_role("button", name="Cancel").click()
    expect(other).to_be_visible()
    other.get_by_test_id("drop-dead-letter").click()
    page.locator("#confirm-drop").click()
    expect(other).to_have_count(0)
    expect(page.locator("#no-dead-letters")).to_be_visible()
    assert team.call("GET", f"/turns/{turn2}")["status"] == "failed"
    shot(page, "dead_letters_empty")
    assert errors == []


def test_handoffs_page_lists_the_queue_and_releases(team: Team, browser: Browser) -> None:
    cid = team.start("human")
    assert team.say(cid, "let me talk to a person")["reply"] == "A colleague will take over this chat."
    page = signed_in(browser, team.url)
    page.get_by_role("link", name="Handoffs").click()
    card = page.locator(f'[data-conversation="{cid}"]')
    expect(card).to_be_visible(timeout=LOAD_MS)
    expect(card.get_by_test_id("handoff-reason")).to_contain_text("let me talk to a person")
    expect(card.get_by_test_id("handoff-priority")).to_have_text("high")
    expect(card).to_contain_text("queue: escalations")
    expect(card).to_contain_text("A colleague will take over this chat.")
    shot(page, "handoffs")
    card.get_by_test_id("release-handoff").click()
    expect(page.get_by_test_id("handoffs-notice")).to_contain_text("answers this conversation again")
    expect(card).to_have_count(0)
    assert team.call("GET", f"/conversations/{cid}")["status"] == "active"
    shot(page, "handoffs_released")
