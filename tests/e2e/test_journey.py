"""The "Done when" journey of issue 5 as one browser test, step by step as the README's
"Getting started" tells a new user: sign up, create a blank workflow, build start -> reply -> end
by drag and drop, fill the reply's form, test it in the chat panel, publish, export the YAML,
edit the downloaded text as a text editor would, import it back (update in place), and find
the edited text on the canvas.

One prod server on its own empty SQLite database (no demo seed: the user is new). Each step is
screenshotted to ``tests/e2e/artifacts/journey-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from builder.yaml_io import load

from .conftest import ARTIFACTS, checked_page
from .test_accounts import PASSWORD, at, serve_app, signup

pytestmark = pytest.mark.e2e
LOAD_MS = 60_000
REPLY_MS = 60_000
EMAIL = "new.builder@example.com"
SLUG = "greeter"
FIRST_TEXT = "Hello! Thanks for writing to Greeter."
EDITED_TEXT = "Hi there! This text was edited in a text editor."


@pytest.fixture(scope="module")
def app_url(workflows_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("journey")
    with serve_app(workflows_dir, work, ARTIFACTS / "reflex-journey.log") as served:
        yield served.url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with checked_page(browser, viewport={"width": 1440, "height": 900}, accept_downloads=True) as pg:
        yield pg


def shot(page: Page, step: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"journey-{step}.png"))


def card(page: Page, node_id: str) -> Locator:
    return page.locator(f".react-flow__node[data-id='{node_id}']")


def saves(page: Page) -> int:
    return int(page.locator("#save-status").get_attribute("data-saves") or 0)


def wait_saved(page: Page, before: int) -> None:
    expect(page.locator("#save-status")).not_to_have_attribute("data-saves", str(before), timeout=15_000)


def center(loc: Locator) -> tuple[float, float]:
    b = loc.bounding_box()
    assert b, loc
    return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2


def mouse_drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A real pointer drag (press, move in steps, release), as a person drags a card or a handle."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 4, start[1] + 4, steps=2)
    page.mouse.move(*end, steps=14)
    page.mouse.up()


def connect(page: Page, source: str, target: str) -> None:
    """Drag from ``source``'s output dot to ``target``'s input dot."""
    before = saves(page)
    edges = page.locator(".react-flow__edge").count()
    out = card(page, source).locator(".react-flow__handle.source").first
    inp = card(page, target).locator(".react-flow__handle.target")
    mouse_drag(page, center(out), center(inp))
    expect(page.locator(".react-flow__edge")).to_have_count(edges + 1)
    wait_saved(page, before)


def row(page: Page, slug: str) -> Locator:
    return page.locator(f'[data-workflow="{slug}"]')


def test_sign_up_build_test_publish_export_edit_import(app_url: str, page: Page, tmp_path: Path) -> None:
    # 1. A new user signs up: a team of their own, the Workflows page with the templates on offer.
    signup(page, app_url, "Greeter team", "Gia", EMAIL, PASSWORD)
    expect(page).to_have_url(at(app_url, "/workflows"), timeout=LOAD_MS)
    expect(page.locator("#workflows-empty")).to_be_visible(timeout=LOAD_MS)
    shot(page, "01-signed-up")

    # 2. New workflow -> a blank one (start -> end), named "Greeter".
    page.locator("#open-create").click()
    page.locator("#new-name").fill("Greeter")
    shot(page, "02-new-workflow")
    page.locator("#create-blank").click()
    expect(row(page, SLUG)).to_be_visible(timeout=LOAD_MS)
    expect(row(page, SLUG).get_by_test_id("wf-status")).to_have_text("Draft")
    row(page, SLUG).get_by_test_id("wf-edit").click()
    expect(page).to_have_url(at(app_url, f"/workflows/{SLUG}/edit"), timeout=LOAD_MS)
    expect(card(page, "end")).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("#canvas [data-ready='1']")).to_have_count(1)
    expect(page.locator(".react-flow__node")).to_have_count(2)
    expect(page.locator(".react-flow__edge")).to_have_count(1)
    shot(page, "03-blank-editor")

    # 3. Build start -> reply -> end by drag and drop: move "end" down to make room,
    #    delete the old start -> end edge (click it, press Delete), drop a "reply" from the palette
    #    between the two, then drag from each output dot to the next card's input dot.
    before = saves(page)
    x, y = center(card(page, "end"))
    mouse_drag(page, (x, y), (x, y + 170))
    wait_saved(page, before)

    before = saves(page)
    page.locator(".react-flow__edge").first.locator(".react-flow__edge-interaction").click(force=True)
    page.keyboard.press("Delete")
    expect(page.locator(".react-flow__edge")).to_have_count(0)
    wait_saved(page, before)

    before = saves(page)
    pane = page.locator("#canvas .react-flow__pane")
    start_box, pane_box = card(page, "start").bounding_box(), pane.bounding_box()
    assert start_box and pane_box
    drop = {
        "x": start_box["x"] - pane_box["x"] + start_box["width"] / 2,
        "y": start_box["y"] - pane_box["y"] + start_box["height"] + 110,
    }
    page.locator("[data-node-type='reply']").drag_to(pane, target_position=drop)
    expect(card(page, "reply")).to_be_visible()
    wait_saved(page, before)
    expect(card(page, "reply").locator(".fd-badge")).to_be_visible()  # no text yet: an error

    connect(page, "start", "reply")
    connect(page, "reply", "end")
    shot(page, "04-three-nodes")

    # 4. Fill the reply's text in its form and apply it.
    card(page, "reply").click()
    form = page.locator("#node-form")
    expect(form.locator("textarea[name='text']")).to_be_visible()
    form.locator("textarea[name='text']").fill(FIRST_TEXT)
    before = saves(page)
    page.locator("#form-save").click()
    wait_saved(page, before)
    expect(card(page, "reply").locator(".fd-summary")).to_have_text(FIRST_TEXT)
    expect(page.locator(".fd-badge")).to_have_count(0)
    expect(page.locator("#issue-summary")).to_contain_text("Valid")
    shot(page, "05-form-filled")

    # 5. Test it in the chat panel: the draft answers with the reply's text.
    page.locator("#test-link").click()
    expect(page).to_have_url(at(app_url, f"/workflows/{SLUG}/test"), timeout=LOAD_MS)
    expect(page.locator("#chat-empty")).to_be_visible(timeout=LOAD_MS)
    page.locator("#chat-input").fill("hi")
    page.locator("#chat-input").press("Enter")
    bot = page.locator(".chat-bubble[data-role='bot']").first
    expect(bot).to_have_attribute("data-pending", "", timeout=REPLY_MS)
    expect(bot).to_contain_text(FIRST_TEXT)
    expect(page.locator("#canvas .fd-card[data-node-id='reply']")).to_have_attribute("data-lit", "1")
    shot(page, "06-chat-test")

    # 6. Publish (back in the editor).
    page.locator("#edit-link").click()
    expect(page).to_have_url(at(app_url, f"/workflows/{SLUG}/edit"), timeout=LOAD_MS)
    expect(card(page, "reply")).to_be_visible(timeout=LOAD_MS)
    page.locator("#publish").click()
    expect(page.locator("#publish-message")).to_contain_text("Published as version 1", timeout=LOAD_MS)
    expect(page.locator("#wf-status")).to_have_text("published v1")
    expect(page.get_by_test_id("draft-changed")).to_have_count(0)
    shot(page, "07-published")

    # 7. Export the YAML from the Workflows page (a download).
    page.goto(app_url + "/workflows")
    expect(row(page, SLUG).get_by_test_id("wf-status")).to_have_text("Published v1", timeout=LOAD_MS)
    row(page, SLUG).get_by_test_id("wf-more").click()
    shot(page, "08-export-menu")
    with page.expect_download() as dl:
        page.get_by_role("menu").get_by_test_id("wf-export").click()
    download = dl.value
    assert download.suggested_filename == f"{SLUG}.yaml"
    exported = Path(download.path()).read_text(encoding="utf-8")
    wf = load(exported).workflow
    assert [(e.source, e.target) for e in wf.edges] == [("start", "reply"), ("reply", "end")]
    assert wf.node("reply") is not None and wf.node("reply").config == {"text": FIRST_TEXT}

    # 8. Edit the downloaded file as a text editor would: a plain string replace, saved to disk.
    assert exported.count(FIRST_TEXT) == 1
    edited = tmp_path / f"{SLUG}.yaml"
    edited.write_text(exported.replace(FIRST_TEXT, EDITED_TEXT), encoding="utf-8")

    # 9. Import it back: same id -> the draft is updated in place; the published version stays.
    page.locator("#open-import").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.locator("#yaml-upload input[type=file]").set_input_files(str(edited))
    notice = page.get_by_test_id("workflows-notice")
    expect(notice).to_contain_text("Updated in place", timeout=LOAD_MS)
    expect(page.locator("[data-workflow]")).to_have_count(1)
    expect(row(page, SLUG).get_by_test_id("wf-changed")).to_be_visible()
    expect(row(page, SLUG).get_by_test_id("wf-validity")).to_have_text("Valid")
    expect(page.get_by_role("dialog")).to_have_count(0)  # closed (its fade-out is over)
    shot(page, "09-imported")

    # 10. Open the editor: the edited text is on the canvas card and in the form.
    row(page, SLUG).get_by_test_id("wf-edit").click()
    expect(card(page, "reply").locator(".fd-summary")).to_have_text(EDITED_TEXT, timeout=LOAD_MS)
    card(page, "reply").click()
    expect(page.locator("#node-form textarea[name='text']")).to_have_value(EDITED_TEXT)
    expect(page.locator("#issue-summary")).to_contain_text("Valid")
    expect(page.get_by_test_id("draft-changed")).to_be_visible()  # v1 stays live until published
    shot(page, "10-edited-on-canvas")
