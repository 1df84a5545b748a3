"""The Workflows and Versions pages in a real browser (prod build, Chromium, own SQLite database).

* The ``flowdesk seed`` demo tenant sees its nine published shipped workflows.
* A fresh team: create from a template, duplicate, delete with confirmation, import a broken file
  (line-numbered error, the text kept), import a fixed one (updated in place), export and compare
  with ``builder.yaml_io``'s canonical dump; then on the Versions page publish, diff, roll back.
* Another team's workflow id shows "not found", never its content.

Screenshots of every page and dialog go to ``tests/e2e/artifacts``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from builder import catalog
from builder.yaml_io import dump, load

from .conftest import ARTIFACTS, ROOT, checked_page
from .test_accounts import PASSWORD, at, login, serve_app, shot, signup

pytestmark = pytest.mark.e2e
LOAD_MS = 60_000
OWNER = "wf.owner@example.com"
TEMPLATE = "faq_handling"
DEMO_EMAIL, DEMO_PASSWORD = "demo@example.com", "demo-shop-2024!"  # runtime/cli_remote.py (dev only)

# An import with a syntax error on line 7 (a mapping where a list item was expected).
BROKEN = """\
version: 1
id: faq_handling
name: Answer FAQs (edited)
nodes:
  - id: start
    type: start
  oops: [
"""

# Parses, but an edge leads to a node that does not exist: saved, not publishable.
GRAPH_ERROR = """\
version: 1
id: ghost_edge
name: Ghost edge
nodes:
  - id: start
    type: start
  - id: end
    type: end
edges:
  - {from: start, to: ghost}
"""


@dataclass(frozen=True)
class App:
    url: str
    work: Path


@pytest.fixture(scope="module")
def app(workflows_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    work = tmp_path_factory.mktemp("workflows_page")
    with serve_app(workflows_dir, work, ARTIFACTS / "reflex-workflows.log") as served:
        yield App(served.url, work)


@pytest.fixture(scope="module")
def owner_state(app: App, browser: Browser) -> Any:
    ctx = browser.new_context()
    page = ctx.new_page()
    signup(page, app.url, "Workflow team", "Wanda", OWNER, PASSWORD)
    expect(page).to_have_url(at(app.url, "/workflows"), timeout=LOAD_MS)
    state = ctx.storage_state()
    ctx.close()
    return state


@pytest.fixture
def page(browser: Browser, owner_state: Any) -> Iterator[Page]:
    with checked_page(
        browser, viewport={"width": 1360, "height": 860}, storage_state=owner_state, accept_downloads=True
    ) as pg:
        yield pg


def row(page: Page, slug: str) -> Any:
    return page.locator(f'[data-workflow="{slug}"]')


def row_action(page: Page, slug: str, test_id: str) -> None:
    """Open a row's "more" menu and pick an item (the menu renders outside the row)."""
    row(page, slug).get_by_test_id("wf-more").click()
    page.get_by_role("menu").get_by_test_id(test_id).click()


def fixed_yaml() -> str:
    """The shipped template with a new name: imported over the existing draft."""
    text = (ROOT / "workflows" / f"{TEMPLATE}.yaml").read_text()
    return text.replace("name: Answer FAQs\n", "name: Answer FAQs (edited)\n", 1)


def open_import(page: Page) -> None:
    page.locator("#open-import").click()
    expect(page.get_by_role("dialog")).to_be_visible()


def test_a_new_team_is_offered_the_shipped_templates(app: App, page: Page, workflows_dir: Path) -> None:
    page.goto(app.url + "/workflows")
    expect(page.locator("#workflows-empty")).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("[data-workflow]")).to_have_count(0)
    templates = catalog.list_workflows(workflows_dir)  # what the server reads: the shipped set + 1 broken
    expect(page.locator("#workflows-empty [data-template]")).to_have_count(len(templates))
    for t in templates:
        card = page.locator(f'#workflows-empty [data-template="{t["id"]}"]')
        expect(card.get_by_test_id("tpl-name")).to_have_text(t["name"])
    broken = page.locator('#workflows-empty [data-template="zz_broken"]')  # conftest's broken file
    expect(broken.get_by_test_id("tpl-status")).to_have_text("1 error")
    expect(broken.get_by_test_id("use-template")).to_be_disabled()
    expect(page).to_have_title("Workflows · flowdesk")
    shot(page, "workflows_empty")


def test_workflows_journey_and_versions(app: App, page: Page) -> None:
    page.goto(app.url + "/workflows")
    expect(page.locator("#workflows-page")).to_be_visible(timeout=LOAD_MS)

    # Create from a template, through the "New workflow" dialog.
    page.locator("#open-create").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(f'[data-template="{TEMPLATE}"]')).to_be_visible()
    shot(page, "workflows_new_dialog")
    dialog.locator(f'[data-template="{TEMPLATE}"]').get_by_test_id("use-template").click()
    expect(row(page, TEMPLATE)).to_be_visible(timeout=LOAD_MS)
    expect(dialog).to_have_count(0)
    r = row(page, TEMPLATE)
    expect(r.get_by_test_id("wf-name")).to_have_text("Answer FAQs")
    expect(r.get_by_test_id("wf-status")).to_have_text("Draft")
    expect(r.get_by_test_id("wf-validity")).to_have_text("Valid")
    expect(r.get_by_test_id("wf-edited-by")).to_have_text(OWNER)
    expect(r.get_by_test_id("wf-description")).to_contain_text("Answers general questions")
    expect(r.get_by_test_id("wf-edit")).to_have_attribute("href", f"/workflows/{TEMPLATE}/edit")

    # Blank, then duplicate, then delete the copy (after a confirmation).
    page.locator("#open-create").click()
    page.locator("#new-name").fill("Returns desk")
    page.locator("#create-blank").click()
    expect(row(page, "returns_desk")).to_be_visible(timeout=LOAD_MS)
    row_action(page, TEMPLATE, "wf-duplicate")
    copy = row(page, f"{TEMPLATE}_copy")
    expect(copy.get_by_test_id("wf-name")).to_have_text("Answer FAQs (copy)")
    expect(page.get_by_test_id("stat-total")).to_have_text("3")
    row_action(page, f"{TEMPLATE}_copy", "wf-delete")
    expect(page.get_by_role("alertdialog")).to_contain_text("Answer FAQs (copy)")
    shot(page, "workflows_delete_confirm")
    page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(copy).to_be_visible()
    row_action(page, f"{TEMPLATE}_copy", "wf-delete")
    page.locator("#confirm-delete").click()
    expect(copy).to_have_count(0)
    expect(page.get_by_test_id("workflows-notice")).to_contain_text("Deleted")

    # Import a broken file: the error names its line; nothing changes; the text is kept to fix it.
    open_import(page)
    page.locator(f"#{'yaml-upload'} input[type=file]").set_input_files(
        files=[{"name": "faq_handling.yaml", "mimeType": "application/yaml", "buffer": BROKEN.encode()}]
    )
    err = page.get_by_test_id("import-error")
    expect(err).to_contain_text("faq_handling.yaml was not imported: line 7", timeout=LOAD_MS)
    expect(page.get_by_test_id("import-issue").first).to_contain_text("line 7, col 3")
    expect(page.locator("#import-text")).to_have_value(BROKEN)
    shot(page, "workflows_import_error")

    # Hostile files: too big (refused by the browser), not UTF-8 (refused by the service).
    # Each says why, and the text being fixed stays in the box.
    upload = page.locator("#yaml-upload input[type=file]")
    upload.set_input_files(
        files=[{"name": "big.yaml", "mimeType": "application/yaml", "buffer": b"#" * (3 << 20)}]
    )
    expect(err).to_have_text("The file is larger than 2 MB and was not imported.")
    upload.set_input_files(
        files=[
            {"name": "latin1.yaml", "mimeType": "application/yaml", "buffer": b"version: 1\nname: caf\xe9\n"}
        ]
    )
    expect(err).to_contain_text("latin1.yaml was not imported: line 2", timeout=LOAD_MS)
    expect(page.get_by_test_id("import-issue").first).to_contain_text("YAML_ENCODING")
    expect(page.locator("#import-text")).to_have_value(BROKEN)
    expect(page.locator("[data-workflow]")).to_have_count(2)  # nothing was written

    # The fixed version, pasted: same id -> the existing workflow is updated in place.
    page.locator("#import-text").fill(fixed_yaml())
    page.locator("#import-submit").click()
    expect(page.get_by_test_id("workflows-notice")).to_contain_text("Updated in place", timeout=LOAD_MS)
    expect(row(page, TEMPLATE).get_by_test_id("wf-name")).to_have_text("Answer FAQs (edited)")
    expect(page.locator("[data-workflow]")).to_have_count(2)

    # Export = the canonical YAML of the imported text.
    with page.expect_download() as dl:
        row_action(page, TEMPLATE, "wf-export")
    download = dl.value
    assert download.suggested_filename == f"{TEMPLATE}.yaml"
    exported = Path(download.path()).read_text(encoding="utf-8")
    assert exported == dump(load(fixed_yaml()).workflow)

    # A file that parses but breaks a graph rule is saved as a draft, flagged with its first error.
    open_import(page)
    page.locator("#import-text").fill(GRAPH_ERROR)
    page.locator("#import-submit").click()
    expect(page.get_by_test_id("workflows-notice")).to_contain_text("with 2 errors", timeout=LOAD_MS)
    bad = row(page, "ghost_edge")
    expect(bad.get_by_test_id("wf-validity")).to_have_text("2 errors")
    expect(bad.get_by_test_id("wf-error")).to_contain_text("ghost_edge.yaml:10:5: EDGE_UNKNOWN_NODE")
    expect(bad.get_by_test_id("wf-error")).to_contain_text("ghost")
    expect(page.get_by_test_id("stat-invalid")).to_have_text("1")
    expect(page.get_by_role("dialog")).to_have_count(0)  # the import dialog's fade-out is over
    shot(page, "workflows_list")

    # Versions: nothing yet; publish v1.
    row(page, TEMPLATE).get_by_test_id("wf-versions").click()
    expect(page).to_have_url(at(app.url, f"/workflows/{TEMPLATE}/versions"), timeout=LOAD_MS)
    expect(page.locator("#versions-empty")).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_test_id("versions-title")).to_have_text("Answer FAQs (edited)")
    page.locator("#publish").click()
    expect(page.locator('[data-version="1"]').get_by_test_id("current-marker")).to_be_visible(timeout=LOAD_MS)
    expect(page.locator('[data-version="1"]').get_by_test_id("published-by")).to_have_text(OWNER)
    expect(page.locator("#publish")).to_be_disabled()  # nothing new to publish

    # Change the draft (import again), publish v2, diff v1 -> v2.
    page.goto(app.url + "/workflows")
    open_import(page)
    v2 = fixed_yaml().replace("top_k: 2", "top_k: 3")
    page.locator("#import-text").fill(v2)
    page.locator("#import-submit").click()
    expect(page.get_by_test_id("workflows-notice")).to_contain_text("Updated in place", timeout=LOAD_MS)
    expect(row(page, TEMPLATE).get_by_test_id("wf-changed")).to_be_visible()
    page.goto(app.url + f"/workflows/{TEMPLATE}/versions")
    expect(page.get_by_test_id("draft-state")).to_have_text(
        "The draft has changes that are not published.", timeout=LOAD_MS
    )
    diff = page.locator("#diff")
    expect(diff.locator('[data-kind="del"]')).to_have_text(["-      top_k: 2"])  # live v1 -> draft
    expect(diff.locator('[data-kind="add"]')).to_have_text(["+      top_k: 3"])
    page.locator("#publish").click()
    expect(page.locator('[data-version="2"]').get_by_test_id("current-marker")).to_be_visible(timeout=LOAD_MS)
    page.get_by_test_id("diff-from").click()
    page.get_by_role("option", name="v1").click()
    page.get_by_test_id("diff-to").click()
    page.get_by_role("option", name="v2").click()
    expect(diff.locator('[data-kind="add"]')).to_have_text(["+      top_k: 3"])
    expect(page.get_by_test_id("diff-stats")).to_have_text("+1 −1")
    shot(page, "versions_diff")

    # Roll back to v1 (cancel once, then confirm): v3 is v1's text, live, and the draft follows.
    v1_row = page.locator('[data-version="1"]')
    v1_row.get_by_test_id("rollback").click()
    expect(page.get_by_role("alertdialog")).to_contain_text("Publish v1 again")
    shot(page, "versions_rollback_confirm")
    page.get_by_role("alertdialog").get_by_role("button", name="Cancel").click()
    expect(page.locator('[data-version="3"]')).to_have_count(0)
    v1_row.get_by_test_id("rollback").click()
    page.locator("#confirm-rollback").click()
    v3 = page.locator('[data-version="3"]')
    expect(v3.get_by_test_id("current-marker")).to_be_visible(timeout=LOAD_MS)
    expect(v3.get_by_test_id("published-by")).to_have_text(OWNER)
    expect(page.get_by_test_id("current-marker")).to_have_count(1)
    expect(page.get_by_test_id("versions-notice")).to_contain_text("Rolled back to v1")
    expect(page.get_by_test_id("draft-state")).to_have_text("The draft is the live version.")
    with page.expect_download() as dl:
        page.locator("#export-draft").click()
    assert Path(dl.value.path()).read_text(encoding="utf-8") == dump(load(fixed_yaml()).workflow)
    shot(page, "versions")


def test_demo_seed_lists_the_nine_shipped_workflows(app: App, browser: Browser) -> None:
    data = app.work / "data"
    env = {
        k: v for k, v in os.environ.items() if k not in ("MIGRATION_DATABASE_URL", "FLOWDESK_WORKFLOWS_DIR")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{data / 'flowdesk.db'}", FLOWDESK_DATA_DIR=str(data), FLOWDESK_ENV="dev"
    )
    out = subprocess.run(
        [str(Path(sys.executable).parent / "flowdesk"), "seed"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    shipped = sorted(p.stem for p in (ROOT / "workflows").glob("*.yaml"))
    assert len(shipped) == 9

    ctx = browser.new_context(viewport={"width": 1360, "height": 860})
    page = ctx.new_page()
    login(page, app.url, DEMO_EMAIL, DEMO_PASSWORD)
    expect(page).to_have_url(at(app.url, "/workflows"), timeout=LOAD_MS)
    expect(page.locator("[data-workflow]")).to_have_count(len(shipped), timeout=LOAD_MS)
    for slug in shipped:
        r = row(page, slug)
        expect(r.get_by_test_id("wf-status")).to_have_text("Published v1")
        expect(r.get_by_test_id("wf-validity")).to_have_text("Valid")
    expect(page.get_by_test_id("stat-published")).to_have_text(str(len(shipped)))
    expect(page.get_by_test_id("stat-invalid")).to_have_text("0")
    shot(page, "workflows_demo")
    ctx.close()


def test_another_teams_workflow_is_not_found(app: App, page: Page) -> None:
    page.goto(app.url + "/workflows/customer_support/versions")  # exists for the demo tenant only
    expect(page.locator("#workflow-missing")).to_be_visible(timeout=LOAD_MS)
    expect(page.locator("#versions-page")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("Customer support")
    shot(page, "versions_not_found")
