"""Accounts in a real browser: sign up -> API key -> invite -> accept -> role change -> viewer refused.

The app is served like ``conftest.app_url`` (``reflex run --env prod``), but on a fresh, migrated
SQLite database of its own and with mail going to its log (no ``SMTP_URL``): the invitation link is
read from that log, as a developer would on the embedded default.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from core.db import migrate

from .conftest import ARTIFACTS, ROOT, _free_port, _reflex_env, _stop, _wait_ready

pytestmark = pytest.mark.e2e
LOAD_MS = 60_000
PASSWORD = "correct-Horse-battery-9"
XSS_TEAM = '<img src=x onerror="window.__xss=1">\'; DROP TABLE users;--'
OWNER = "owner@example.com"
NEWBIE = "new.person@example.com"


@dataclass(frozen=True)
class Served:
    url: str
    log: Path


@contextmanager
def serve_app(workflows_dir: Path, work: Path, log_path: Path) -> Iterator[Served]:
    """``reflex run --env prod`` on a free port with its own migrated SQLite database."""
    data = work / "data"
    data.mkdir(parents=True)
    db_url = f"sqlite:///{data / 'flowdesk.db'}"
    migrate(db_url)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _reflex_env(workflows_dir, work)
    for name in ("MIGRATION_DATABASE_URL", "SMTP_URL", "FLOWDESK_ENV", "REDIS_URL"):
        env.pop(name, None)
    env.update(DATABASE_URL=db_url, FLOWDESK_DATA_DIR=str(data), FLOWDESK_PUBLIC_URL=url)
    cmd = [str(Path(sys.executable).parent / "reflex"), "run", "--env", "prod", "--single-port"]
    cmd += ["--frontend-port", str(port), "--backend-host", "127.0.0.1"]
    ARTIFACTS.mkdir(exist_ok=True)
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
            yield Served(url, log_path)
        finally:
            _stop(proc)
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def served(workflows_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_app(
        workflows_dir, tmp_path_factory.mktemp("accounts"), ARTIFACTS / "reflex-accounts.log"
    ) as s:
        yield s


def at(base: str, path: str) -> re.Pattern[str]:
    """The page at ``path`` (the prod build serves ``/signup/`` for ``/signup``)."""
    return re.compile(rf"^{re.escape(base + path)}/?$")


def new_context(browser: Browser) -> BrowserContext:
    return browser.new_context(viewport={"width": 1360, "height": 860})


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def invitation_token(log: Path, email: str, timeout_s: float = 15.0) -> str:
    """The newest invitation link mailed to ``email``, from the app's log (mailer.py prints it)."""
    pattern = re.compile(rf"To: {re.escape(email)}\n.*?/invite\?token=([A-Za-z0-9_\-.~%]+)", re.S)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = pattern.findall(log.read_text(errors="replace"))
        if found:
            return str(found[-1])
        time.sleep(0.3)
    raise AssertionError(f"no invitation for {email} in {log}")


def signup(page: Page, url: str, team: str, name: str, email: str, password: str) -> None:
    page.goto(url + "/signup")
    form = page.locator("#signup-form")
    expect(form).to_be_visible(timeout=LOAD_MS)
    form.locator("[name=team]").fill(team)
    form.locator("[name=name]").fill(name)
    form.locator("[name=email]").fill(email)
    form.locator("[name=password]").fill(password)
    page.locator("#signup-submit").click()


def login(page: Page, url: str, email: str, password: str) -> None:
    page.goto(url + "/login")
    expect(page.locator("#login-form")).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_test_id("login-error")).to_have_count(0)  # the last attempt's message is gone
    page.locator("#login-form [name=email]").fill(email)
    page.locator("#login-form [name=password]").fill(password)
    page.locator("#login-submit").click()


def open_menu(page: Page) -> None:
    page.locator("#user-menu").click()
    expect(page.get_by_test_id("menu-email")).to_be_visible()


def test_signed_out_pages_redirect_to_login(served: Served, browser: Browser) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    for path in ("/workflows", "/settings/members", "/settings/api-keys", "/settings/plan"):
        page.goto(served.url + path)
        expect(page).to_have_url(at(served.url, "/login"), timeout=LOAD_MS)
    expect(page.locator("#user-menu")).to_have_count(0)
    shot(page, "login")
    ctx.close()


def test_signup_rejects_bad_input(served: Served, browser: Browser) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    page.goto(served.url + "/signup")
    expect(page.locator("#signup-form")).to_be_visible(timeout=LOAD_MS)
    submit = page.locator("#signup-submit")
    form = page.locator("#signup-form")

    submit.click()  # everything empty
    expect(page.get_by_test_id("error-team")).to_have_text("The name cannot be empty")

    form.locator("[name=team]").fill("x" * 201)
    submit.click()
    expect(page.get_by_test_id("error-team")).to_contain_text("longer than 200 characters")

    form.locator("[name=team]").fill("Acme")
    form.locator("[name=email]").fill("not-an-email")
    form.locator("[name=password]").fill(PASSWORD)
    submit.click()
    expect(page.get_by_test_id("error-email")).to_have_text("Enter a valid email address")
    expect(page.get_by_test_id("error-team")).to_have_count(0)

    form.locator("[name=email]").fill("weak@example.com")
    form.locator("[name=password]").fill("aaaaaaaaaaaa")
    submit.click()
    expect(page.get_by_test_id("error-password")).to_contain_text("single character")

    form.locator("[name=password]").fill("short")
    submit.click()
    expect(page.get_by_test_id("error-password")).to_contain_text("at least")
    shot(page, "signup_errors")
    expect(page).to_have_url(at(served.url, "/signup"))
    ctx.close()


def test_accounts_journey(served: Served, browser: Browser) -> None:
    errors: list[str] = []
    owner_ctx = new_context(browser)
    owner = owner_ctx.new_page()
    owner.on("pageerror", lambda e: errors.append(str(e)))

    # Sign up: the team name is hostile markup + SQL; it must come back as text, inert.
    signup(owner, served.url, XSS_TEAM, "Olive Owner", OWNER, PASSWORD)
    expect(owner).to_have_url(at(served.url, "/workflows"), timeout=LOAD_MS)
    expect(owner.locator("#workflows-page")).to_be_visible(timeout=LOAD_MS)
    open_menu(owner)
    expect(owner.get_by_role("menu")).to_contain_text(XSS_TEAM)
    expect(owner.get_by_test_id("menu-role")).to_have_text("owner")
    assert owner.evaluate("window.__xss") is None
    expect(owner.locator("img[src=x]")).to_have_count(0)
    owner.keyboard.press("Escape")
    cookie = next(c for c in owner_ctx.cookies() if c["name"] == "fd_session")
    assert cookie["sameSite"] == "Strict" and len(cookie["value"]) >= 32
    settings_nav = owner.get_by_role("navigation", name="Settings")
    for label in ("Members", "API keys", "Plan"):
        expect(settings_nav.get_by_role("link", name=label)).to_be_visible()

    # API keys: empty name refused; then a key whose secret is shown once, listed by prefix only.
    owner.goto(served.url + "/settings/api-keys")
    expect(owner.locator("#keys-empty")).to_be_visible(timeout=LOAD_MS)
    owner.locator("#create-key").click()
    expect(owner.get_by_test_id("create-key-error")).to_have_text("The name cannot be empty")
    owner.locator("#key-name").fill("CI deploy <b>bold</b>")
    owner.locator('[data-scope="workflows:write"]').click()
    owner.locator("#create-key").click()
    secret_el = owner.get_by_test_id("new-secret")
    expect(secret_el).to_be_visible()
    secret = secret_el.inner_text().strip()
    assert re.fullmatch(r"fd_(live|test)_[A-Za-z0-9_-]{32}", secret), secret
    shot(owner, "api_key_secret")
    owner_ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
    owner.locator("#copy-secret").click()
    expect(owner.get_by_text("Copied")).to_be_visible()
    assert owner.evaluate("navigator.clipboard.readText()") == secret
    owner.locator("#close-secret").click()
    expect(secret_el).to_have_count(0)
    row = owner.locator(f'[data-key="{secret[:12]}"]')
    expect(row).to_be_visible()
    expect(row.get_by_test_id("key-name")).to_have_text("CI deploy <b>bold</b>")
    expect(row).to_contain_text("workflows:read")
    expect(row).to_contain_text("workflows:write")
    expect(row.get_by_test_id("key-status")).to_have_text("Active")
    assert secret not in owner.content()
    owner.reload()
    expect(row).to_be_visible(timeout=LOAD_MS)
    assert secret not in owner.content()
    shot(owner, "api_keys")
    # Revoke asks first; cancelling changes nothing, confirming revokes.
    row.get_by_test_id("revoke-key").click()
    expect(owner.get_by_role("alertdialog")).to_be_visible()
    owner.get_by_role("button", name="Cancel").click()
    expect(row.get_by_test_id("key-status")).to_have_text("Active")
    row.get_by_test_id("revoke-key").click()
    owner.locator("#confirm-revoke").click()
    expect(row.get_by_test_id("key-status")).to_have_text("Revoked")

    # Invite: a bad address is refused; a good one becomes a pending invitation.
    owner.goto(served.url + "/settings/members")
    invite_form = owner.locator("#invite-form")
    expect(invite_form).to_be_visible(timeout=LOAD_MS)
    expect(owner.locator(f'[data-member="{OWNER}"]')).to_contain_text("owner")
    owner.locator("#invite-email").fill("<script>alert(1)</script>")
    owner.locator("#invite-submit").click()
    expect(owner.get_by_test_id("invite-error")).to_have_text("Enter a valid email address")
    owner.locator("#invite-email").fill(NEWBIE)
    owner.locator("#invite-submit").click()
    expect(owner.get_by_test_id("members-notice")).to_contain_text(f"Invitation sent to {NEWBIE} as editor")
    pending = owner.locator(f'[data-member="{NEWBIE}"]')
    expect(pending).to_contain_text("Invited")
    shot(owner, "members")
    token = invitation_token(served.log, NEWBIE)

    # Accept in a second browser: a forged token is refused, a weak password too, then it works.
    new_ctx = new_context(browser)
    newbie = new_ctx.new_page()
    newbie.on("pageerror", lambda e: errors.append(str(e)))
    newbie.goto(served.url + "/invite?token=forged-token")
    expect(newbie.locator("#accept-form")).to_be_visible(timeout=LOAD_MS)
    newbie.locator("#accept-form [name=password]").fill(PASSWORD)
    newbie.locator("#accept-submit").click()
    expect(newbie.get_by_test_id("invite-error")).to_contain_text("not valid")
    newbie.goto(f"{served.url}/invite?token={token}")
    expect(newbie.locator("#accept-form")).to_be_visible(timeout=LOAD_MS)
    newbie.locator("#accept-form [name=name]").fill("Nina New")
    newbie.locator("#accept-submit").click()  # no password for a new account
    expect(newbie.get_by_test_id("error-password")).to_have_text("Choose a password to create your account")
    newbie.locator("#accept-form [name=password]").fill("short")
    newbie.locator("#accept-submit").click()
    expect(newbie.get_by_test_id("error-password")).to_contain_text("at least")
    shot(newbie, "invite")
    newbie.locator("#accept-form [name=password]").fill(PASSWORD)
    newbie.locator("#accept-submit").click()
    expect(newbie).to_have_url(at(served.url, "/workflows"), timeout=LOAD_MS)
    open_menu(newbie)
    expect(newbie.get_by_test_id("menu-email")).to_have_text(NEWBIE)
    expect(newbie.get_by_test_id("menu-role")).to_have_text("editor")
    newbie.keyboard.press("Escape")
    # The link is single use.
    other = new_context(browser)
    reuse = other.new_page()
    reuse.goto(f"{served.url}/invite?token={token}")
    expect(reuse.locator("#accept-form")).to_be_visible(timeout=LOAD_MS)
    reuse.locator("#accept-form [name=password]").fill(PASSWORD)
    reuse.locator("#accept-submit").click()
    expect(reuse.get_by_test_id("invite-error")).to_be_visible()
    other.close()

    # The owner makes the new member a viewer.
    owner.reload()
    member = owner.locator(f'[data-member="{NEWBIE}"]')
    expect(member).to_contain_text("Active", timeout=LOAD_MS)
    member.get_by_role("combobox").click()
    owner.get_by_role("option", name="viewer", exact=True).click()
    expect(owner.get_by_test_id("members-notice")).to_have_text("Role changed to viewer.")
    expect(member.get_by_test_id("role-badge")).to_have_text("viewer")
    shot(owner, "members_roles")

    # The viewer: no admin nav, and every admin page refuses.
    newbie.goto(served.url + "/workflows")
    expect(newbie.locator("#workflows-page")).to_be_visible(timeout=LOAD_MS)
    expect(newbie.locator("#open-create")).to_have_count(0)  # viewers do not create workflows
    expect(newbie.get_by_role("navigation", name="Settings")).to_have_count(0)
    open_menu(newbie)
    expect(newbie.get_by_test_id("menu-role")).to_have_text("viewer")
    newbie.keyboard.press("Escape")
    for path in ("/settings/members", "/settings/api-keys", "/settings/plan"):
        newbie.goto(served.url + path)
        expect(newbie.locator("#not-admin")).to_contain_text("You need to be an admin", timeout=LOAD_MS)
        expect(newbie.locator("#invite-form")).to_have_count(0)
        expect(newbie.locator("#create-key-form")).to_have_count(0)
        expect(newbie.locator("#usage")).to_have_count(0)
    shot(newbie, "not_admin")

    # Plan: usage against each limit (2 members of the free plan's 2).
    owner.goto(served.url + "/settings/plan")
    expect(owner.locator("#plan-name")).to_have_text("Free", timeout=LOAD_MS)
    expect(owner.locator('[data-limit="members"]')).to_contain_text("2 of 2 members")
    expect(owner.locator("[data-limit]")).to_have_count(5)
    expect(owner.get_by_test_id("upgrade-path")).to_contain_text("Upgrade to Pro")
    shot(owner, "plan")

    # Remove asks first; after removal the viewer's session ends.
    owner.goto(served.url + "/settings/members")
    member = owner.locator(f'[data-member="{NEWBIE}"]')
    expect(member).to_be_visible(timeout=LOAD_MS)
    member.get_by_test_id("remove-member").click()
    expect(owner.get_by_role("alertdialog")).to_contain_text(NEWBIE)
    owner.locator("#confirm-remove").click()
    expect(member).to_have_count(0)
    newbie.goto(served.url + "/workflows")
    expect(newbie).to_have_url(at(served.url, "/login"), timeout=LOAD_MS)

    # Log out from the user menu: the session is revoked, the pages send us to /login.
    open_menu(owner)
    owner.locator("#logout").click()
    expect(owner).to_have_url(at(served.url, "/login"), timeout=LOAD_MS)
    assert not [c for c in owner_ctx.cookies() if c["name"] == "fd_session" and c["value"]]
    # Replaying the old token does not help: logout revoked it on the server.
    owner_ctx.add_cookies([{"name": "fd_session", "value": cookie["value"], "url": served.url}])
    owner.goto(served.url + "/settings/members")
    expect(owner).to_have_url(at(served.url, "/login"), timeout=LOAD_MS)

    new_ctx.close()
    owner_ctx.close()
    assert errors == []


def test_login_errors_and_lockout(served: Served, browser: Browser) -> None:
    ctx = new_context(browser)
    page = ctx.new_page()
    email = "locked@example.com"
    signup(page, served.url, "Lock team", "Lou", email, PASSWORD)
    expect(page).to_have_url(at(served.url, "/workflows"), timeout=LOAD_MS)
    open_menu(page)
    page.locator("#logout").click()
    expect(page).to_have_url(at(served.url, "/login"), timeout=LOAD_MS)

    login(page, served.url, "", "")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong email or password")
    login(page, served.url, "nobody@example.com", PASSWORD)  # unknown email: the same message
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong email or password")
    login(page, served.url, "' OR 1=1 --", "' OR 1=1 --")
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong email or password")
    for _ in range(5):
        login(page, served.url, email, "wrong-password-1")
        expect(page.get_by_test_id("login-error")).to_be_visible()
    login(page, served.url, email, PASSWORD)  # even the right password waits out the lock
    expect(page.get_by_test_id("login-error")).to_contain_text("Too many failed attempts")
    expect(page).to_have_url(at(served.url, "/login"))
    shot(page, "login_locked")
    ctx.close()
