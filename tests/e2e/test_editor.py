"""The canvas editor in a real browser: drag, connect, form, reload; undo/redo; publish refused;
YAML view; every shipped workflow opens without errors.

One prod server for the module, on its own SQLite database, seeded before it starts with the
demo tenant (every shipped workflow published) plus small drafts the tests edit; the browser
signs in as the demo owner once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from builder.yaml_io import load
from core.db import migrate

from .conftest import ARTIFACTS, ROOT, _free_port, _reflex_env, _stop, _wait_ready, checked_page, login_state

pytestmark = pytest.mark.e2e
LOAD_MS = 60_000
EMAIL, PASSWORD = "demo@example.com", "demo-shop-2024!"
SHIPPED = sorted((ROOT / "workflows").glob("*.yaml"))

DRAFT = """\
version: 1
id: {slug}
name: {name}
nodes:
  - id: start
    type: start
  - id: hello
    type: reply
    config:
      text: Hello!
edges:
  - {{from: start, to: hello}}
layout:
  start: [0, 0]
  hello: [0, 140]
"""
DRAFTS = {
    "e2e_drag": "Drag and drop",
    "e2e_undo": "Undo and redo",
    "e2e_publish": "Publish",
    "e2e_yaml": "YAML",
    "e2e_copy": "Copy and paste",
}

SEED = textwrap.dedent(
    """
    import sys
    from builder import service as wfs
    from core.db import tenant_session
    from runtime.cli_remote import seed_demo
    out = seed_demo()
    with tenant_session(out["tenant_id"]) as s:
        for path in sys.argv[1:]:
            wfs.save_draft(s, tenant_id=out["tenant_id"], yaml_text=open(path).read(), author="seed")
    """
)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, workflows_dir: Path) -> Iterator[str]:
    work = tmp_path_factory.mktemp("editor")
    data = work / "data"
    data.mkdir()
    db_url = f"sqlite:///{data / 'flowdesk.db'}"
    migrate(db_url)
    files = []
    for slug, name in DRAFTS.items():
        f = work / f"{slug}.yaml"
        f.write_text(DRAFT.format(slug=slug, name=name))
        files.append(str(f))
    # A process of its own: the seed uses the process-wide engine of DATABASE_URL.
    seed_env = {k: v for k, v in os.environ.items() if k not in ("MIGRATION_DATABASE_URL", "REDIS_URL")}
    seed_env.update(DATABASE_URL=db_url, FLOWDESK_DATA_DIR=str(data))
    subprocess.run([sys.executable, "-c", SEED, *files], cwd=ROOT, env=seed_env, check=True, timeout=120)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _reflex_env(workflows_dir, work)
    for name in ("MIGRATION_DATABASE_URL", "SMTP_URL", "FLOWDESK_ENV", "REDIS_URL"):
        env.pop(name, None)
    env.update(DATABASE_URL=db_url, FLOWDESK_DATA_DIR=str(data), FLOWDESK_PUBLIC_URL=url)
    cmd = [str(Path(sys.executable).parent / "reflex"), "run", "--env", "prod", "--single-port"]
    cmd += ["--frontend-port", str(port), "--backend-host", "127.0.0.1"]
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "reflex-editor.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, url, log_path)
            yield url
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def signed_in(app_url: str, browser: Browser) -> Any:
    return login_state(browser, app_url, EMAIL, PASSWORD, LOAD_MS)


@pytest.fixture
def page(browser: Browser, signed_in: Any) -> Iterator[Page]:
    with checked_page(browser, viewport={"width": 1440, "height": 900}, storage_state=signed_in) as pg:
        yield pg


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"editor-{name}.png"))


def open_editor(page: Page, app_url: str, slug: str) -> None:
    page.goto(f"{app_url}/workflows/{slug}/edit")
    expect(page.locator(".react-flow__node").first).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("#canvas [data-ready='1']")).to_have_count(1)


def card(page: Page, node_id: str) -> Locator:
    return page.locator(f".react-flow__node[data-id='{node_id}']")


def saves(page: Page) -> int:
    return int(page.locator("#save-status").get_attribute("data-saves") or 0)


def wait_saved(page: Page, before: int) -> None:
    expect(page.locator("#save-status")).not_to_have_attribute("data-saves", str(before), timeout=15_000)


def position(page: Page, node_id: str) -> tuple[float, float]:
    style = card(page, node_id).get_attribute("style") or ""
    m = re.search(r"translate\(([-\d.]+)px,\s*([-\d.]+)px\)", style)
    assert m, style
    return float(m.group(1)), float(m.group(2))


def yaml_text(page: Page) -> str:
    page.locator("#tab-yaml").click()
    box = page.locator("#yaml-editor")
    expect(box).to_be_visible()
    text = box.input_value()
    page.locator("#tab-node").click()
    return text


def drag(page: Page, source: Locator, dx: float, dy: float) -> None:
    b = source.bounding_box()
    assert b
    x, y = b["x"] + b["width"] / 2, b["y"] + 14
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x + dx * i / 10, y + dy * i / 10)
    page.mouse.up()


#: True when every node card lies inside the visible canvas (the initial fit included it).
ALL_IN_VIEW = """() => {
  const pane = document.querySelector('#canvas .react-flow');
  const nodes = [...document.querySelectorAll('#canvas .react-flow__node')];
  if (!pane || !nodes.length) return false;
  const p = pane.getBoundingClientRect();
  return nodes.every((n) => {
    const r = n.getBoundingClientRect();
    return r.width > 0 && r.left >= p.left && r.right <= p.right && r.top >= p.top && r.bottom <= p.bottom;
  });
}"""


def wait_all_in_view(page: Page) -> None:
    """Wait for the opening fit to show every node (it runs once the cards are measured)."""
    page.wait_for_function(ALL_IN_VIEW, timeout=10_000)


def test_every_shipped_workflow_opens_valid_on_the_canvas(page: Page, app_url: str) -> None:
    for path in SHIPPED:
        wf = load(path.read_text()).workflow
        open_editor(page, app_url, wf.id)
        expect(page.locator(".react-flow__node")).to_have_count(len(wf.nodes))
        expect(page.locator(".react-flow__edge")).to_have_count(
            len({(e.source, e.target, e.when) for e in wf.edges})
        )
        expect(page.locator("#issue-summary")).to_contain_text("Valid")
        expect(page.locator(".fd-card[data-issue='error']")).to_have_count(0)
        expect(page.locator(".react-flow__minimap")).to_be_visible()
        wait_all_in_view(page)
        shot(page, wf.id)
    open_editor(page, app_url, "customer_support")
    card(page, "understand").click()
    expect(page.locator("#node-form [data-field='intents'] textarea")).to_contain_text("track_order")
    expect(page.locator("[data-testid='var-chip']").first).to_be_visible()
    shot(page, "node-form")


def test_drag_connect_fill_save_reload(page: Page, app_url: str) -> None:
    open_editor(page, app_url, "e2e_drag")
    before = saves(page)
    item = page.locator("[data-node-type='reply']")
    target = page.locator("#canvas .react-flow__pane")
    box, pane = card(page, "hello").bounding_box(), target.bounding_box()
    assert box and pane
    # Drop it right of and below the "hello" card (coordinates relative to the pane).
    drop = {"x": box["x"] - pane["x"] + box["width"] + 120, "y": box["y"] - pane["y"] + 150}
    item.drag_to(target, target_position=drop)
    new = card(page, "reply")
    expect(new).to_be_visible()
    wait_saved(page, before)
    expect(new.locator(".fd-badge")).to_be_visible()  # empty text: an error until the form is filled

    before = saves(page)
    out = card(page, "start").locator(".react-flow__handle.source").first
    inp = new.locator(".react-flow__handle.target")
    drag(page, out, 0, 0)  # warm-up: nothing happens on a zero-length drag
    ob, ib = out.bounding_box(), inp.bounding_box()
    assert ob and ib
    page.mouse.move(ob["x"] + ob["width"] / 2, ob["y"] + ob["height"] / 2)
    page.mouse.down()
    page.mouse.move(ib["x"] + 2, ib["y"] + 2, steps=12)
    page.mouse.move(ib["x"] + ib["width"] / 2, ib["y"] + ib["height"] / 2, steps=3)
    page.mouse.up()
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    wait_saved(page, before)

    new.click()
    form = page.locator("#node-form")
    expect(form.locator("[data-field='text']")).to_be_visible()
    form.locator("textarea[name='text']").fill("Thanks, {{ message }}!")
    before = saves(page)
    page.locator("#form-save").click()
    wait_saved(page, before)
    expect(new.locator(".fd-summary")).to_have_text("Thanks, {{ message }}!")
    expect(new.locator(".fd-badge")).to_have_count(0)
    shot(page, "drag-connect-form")

    page.reload()
    expect(card(page, "reply")).to_be_visible(timeout=LOAD_MS)
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    wf = load(yaml_text(page)).workflow
    reply = wf.node("reply")
    assert reply is not None and reply.config == {"text": "Thanks, {{ message }}!"}
    assert {(e.source, e.target) for e in wf.edges} == {("start", "hello"), ("start", "reply")}
    assert set(wf.layout) == {"start", "hello", "reply"}


def test_undo_and_redo_a_move(page: Page, app_url: str) -> None:
    open_editor(page, app_url, "e2e_undo")
    start = position(page, "hello")
    before = saves(page)
    drag(page, card(page, "hello"), 180, 60)
    wait_saved(page, before)
    moved = position(page, "hello")
    assert moved != start
    assert "hello: [0, 140]" not in yaml_text(page)

    page.reload()  # the history belongs to the session, not to the page
    expect(card(page, "hello")).to_be_visible(timeout=LOAD_MS)
    assert position(page, "hello") == moved
    expect(page.locator("#undo")).to_be_enabled()
    page.locator("#canvas .react-flow__pane").click(position={"x": 20, "y": 20})
    before = saves(page)
    page.keyboard.press("Control+z")
    wait_saved(page, before)
    assert position(page, "hello") == start
    assert "hello: [0, 140]" in yaml_text(page)

    page.locator("#canvas .react-flow__pane").click(position={"x": 20, "y": 20})
    before = saves(page)
    page.keyboard.press("Control+Shift+z")
    wait_saved(page, before)
    assert position(page, "hello") == moved
    expect(page.locator("#redo")).to_be_disabled()
    shot(page, "undo-redo")


def test_publish_is_refused_while_an_error_exists(page: Page, app_url: str) -> None:
    open_editor(page, app_url, "e2e_publish")
    before = saves(page)
    page.locator("[data-node-type='http_request']").click()  # added unconnected, without a url
    expect(card(page, "http_request")).to_be_visible()
    wait_saved(page, before)
    expect(card(page, "http_request").locator(".fd-badge")).to_be_visible()
    expect(page.locator("#issue-summary")).to_contain_text("error")
    page.locator("#publish").click()
    expect(page.locator("#publish-message")).to_contain_text("cannot be published")
    expect(
        page.locator("[data-testid='issue'][data-severity='error'][data-node='http_request']").first
    ).to_be_visible()
    shot(page, "publish-refused")

    card(page, "http_request").click()
    before = saves(page)
    page.locator("#node-delete").click()
    wait_saved(page, before)
    expect(card(page, "http_request")).to_have_count(0)
    page.locator("#publish").click()
    expect(page.locator("#publish-message")).to_contain_text("Published as version 1")
    expect(page.locator("#wf-status")).to_have_text("published v1")


def test_yaml_view_edits_update_the_canvas(page: Page, app_url: str) -> None:
    open_editor(page, app_url, "e2e_yaml")
    page.locator("#tab-yaml").click()
    box = page.locator("#yaml-editor")
    text = box.input_value()
    box.fill(text.replace("nodes:\n", "nodes:\n  - id: broken\n   type: [\n", 1))
    page.locator("#yaml-apply").click()
    expect(page.locator("[data-testid='yaml-error']").first).to_contain_text("line 6")
    expect(page.locator(".react-flow__node")).to_have_count(2)
    shot(page, "yaml-error")

    before = saves(page)
    edited = text.replace(
        "edges:\n", "  - id: bye\n    type: end\nedges:\n  - {from: hello, to: bye}\n", 1
    ).replace("Hello!", "Hi from YAML")
    box.fill(edited)
    page.locator("#yaml-apply").click()
    wait_saved(page, before)
    expect(card(page, "bye")).to_be_visible()
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    expect(card(page, "hello").locator(".fd-summary")).to_have_text("Hi from YAML")
    expect(page.locator("[data-testid='yaml-error']")).to_have_count(0)
    shot(page, "yaml-applied")

    # ...and the canvas's own edits come back into the text.
    before = saves(page)
    drag(page, card(page, "bye"), 200, 0)
    wait_saved(page, before)
    assert re.search(r"bye: \[(?!0, )", box.input_value() if box.is_visible() else yaml_text(page))


def test_copy_paste_multi_select_and_delete(page: Page, app_url: str) -> None:
    open_editor(page, app_url, "e2e_copy")
    card(page, "hello").click()
    before = saves(page)
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    pasted = card(page, "hello_copy")
    expect(pasted).to_be_visible()
    wait_saved(page, before)
    expect(pasted.locator(".fd-summary")).to_have_text("Hello!")  # the config came along

    card(page, "hello").click()
    card(page, "hello_copy").click(modifiers=["Shift"])
    expect(page.locator("#side-panel")).to_contain_text("2 nodes selected")
    shot(page, "multi-select")
    before = saves(page)
    page.keyboard.press("Delete")
    wait_saved(page, before)
    expect(page.locator(".react-flow__node")).to_have_count(1)
    wf = load(yaml_text(page)).workflow
    assert [n.id for n in wf.nodes] == ["start"] and wf.edges == []
