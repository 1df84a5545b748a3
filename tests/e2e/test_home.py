"""The first page, in a real browser: a new team is offered exactly what ``builder.catalog`` finds.

The page needs a login, so the app is served on its own fresh database (``serve_app``) and a team
is signed up once; every test's browser context starts with that session cookie.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from builder import catalog

from .conftest import ARTIFACTS, ROOT
from .test_accounts import PASSWORD, at, serve_app, signup

pytestmark = pytest.mark.e2e
LOAD_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def app_url(workflows_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Overrides conftest's: the same prod server, on a fresh migrated database."""
    work = tmp_path_factory.mktemp("home")
    with serve_app(workflows_dir, work, ARTIFACTS / "reflex-prod.log") as served:
        yield served.url


@pytest.fixture(scope="module")
def signed_in(app_url: str, browser: Browser) -> Any:
    """The storage state (session cookie) of a freshly signed-up owner."""
    ctx = browser.new_context()
    page = ctx.new_page()
    signup(page, app_url, "Home team", "Hana", "home@example.com", PASSWORD)
    expect(page).to_have_url(at(app_url, "/workflows"), timeout=LOAD_TIMEOUT_MS)
    state = ctx.storage_state()
    ctx.close()
    return state


@pytest.fixture
def page(browser: Browser, signed_in: Any) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1360, "height": 860}, storage_state=signed_in)
    yield ctx.new_page()
    ctx.close()


@pytest.fixture(scope="module")
def expected(workflows_dir: Path) -> list[dict]:
    rows = catalog.list_workflows(workflows_dir)
    assert len(rows) >= 2, "need at least one workflow plus the broken one"
    shipped = {p.stem for p in (ROOT / "workflows").glob("*.yaml")}
    assert shipped <= {r["file"].removesuffix(".yaml") for r in rows}
    return rows


def test_home_offers_the_shipped_workflows_as_templates(
    app_url: str, page: Page, expected: list[dict]
) -> None:
    """A new team has no workflows yet: the page offers exactly what ``builder.catalog`` finds."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app_url + "/")

    cards = page.locator("#workflows-empty [data-template]")
    expect(cards).to_have_count(len(expected), timeout=LOAD_TIMEOUT_MS)
    expect(page.locator("[data-workflow]")).to_have_count(0)
    for want in expected:
        card = page.locator(f'#workflows-empty [data-template="{want["id"]}"]')
        expect(card.get_by_test_id("tpl-name")).to_have_text(want["name"])
        if want["valid"]:
            expect(card.get_by_test_id("use-template")).to_be_enabled()
        else:
            n = len(want["errors"])
            expect(card.get_by_test_id("tpl-status")).to_have_text(f"{n} error" + ("" if n == 1 else "s"))
            expect(card.get_by_test_id("use-template")).to_be_disabled()
    expect(page.get_by_test_id("stat-total")).to_have_text("0")
    expect(page).to_have_title("Workflows · flowdesk")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)
    assert errors == []


def test_workflows_route_and_nav(app_url: str, page: Page, expected: list[dict]) -> None:
    page.goto(app_url + "/workflows")
    expect(page.locator("[data-template]")).to_have_count(len(expected), timeout=LOAD_TIMEOUT_MS)
    nav = page.get_by_role("navigation").get_by_role("link", name="Workflows")
    expect(nav).to_have_attribute("aria-current", "page")
    page.locator("#brand").click()
    expect(page).to_have_url(app_url + "/")
    expect(page.locator("[data-template]")).to_have_count(len(expected), timeout=LOAD_TIMEOUT_MS)


def test_api_health_on_the_same_port(app_url: str) -> None:
    r = httpx.get(f"{app_url}/api/v1/health", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True and body["service"] == "flowdesk"
