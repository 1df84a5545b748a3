"""The root UI state: who is signed in. Kept thin (DESIGN.md §3).

No SQL, no LLM, no queue here: handlers call plain services (``builder``, ``runtime``,
``tenants``) and copy plain data into vars.

The session token. Reflex sets cookies from the browser (``universal-cookie``), so an
``HttpOnly`` cookie is not possible through ``rx.Cookie`` in 0.10.1. What we do instead:

* the token lives in ``rx.Cookie`` ``fd_session`` with ``SameSite=Strict``, ``Secure`` when
  ``PUBLIC_URL`` is https, and a ``max_age`` equal to the server-side session TTL;
* the token is only a lookup key: the server stores its hash, enforces expiry and revocation
  (logout revokes it), and the principal (tenant, role, scopes) is re-read from the database by
  ``tenants.service.principal_for_session`` on every page load *and* every action, so a role
  change or removal applies at once and the browser never holds a role it could edit;
* every rendered value is escaped by React, which is what keeps script out of the page.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from core.errors import ServiceError
from core.settings import get_settings
from tenants import roles
from tenants import service as accounts
from tenants.principal import Principal

SESSION_COOKIE = "fd_session"
LOGIN_PATH = "/login"
HOME_PATH = "/workflows"


def _cookie_secure() -> bool:
    return get_settings().PUBLIC_URL.startswith("https://")


class State(rx.State):
    """Shared by every page: the signed-in user and their team."""

    session_token: str = rx.Cookie(
        "",
        name=SESSION_COOKIE,
        path="/",
        max_age=get_settings().SESSION_TTL_HOURS * 3600,
        secure=_cookie_secure(),
        same_site="strict",
    )
    user_email: str = ""
    user_role: str = ""
    team_name: str = ""
    #: False until a page load checked the session (pages show a spinner meanwhile).
    auth_checked: bool = False

    @rx.var
    def logged_in(self) -> bool:
        return self.user_role != ""

    @rx.var
    def is_admin(self) -> bool:
        return self.user_role != "" and roles.at_least(self.user_role, "admin")

    def client_ip(self) -> str | None:
        ip = getattr(self.router.session, "client_ip", "") or ""
        return ip or None

    def principal(self) -> Principal | None:
        """The caller, read fresh from the database (None when not signed in or expired)."""
        if not self.session_token:
            return None
        try:
            return accounts.principal_for_session(self.session_token, ip=self.client_ip())
        except ServiceError:
            return None

    def _forget(self) -> None:
        self.session_token = ""
        self.user_email = self.user_role = self.team_name = ""

    def _remember(self, p: Principal) -> None:
        self.user_role = p.role or ""
        try:
            self.team_name = accounts.tenant_of(p).name
            me = next((m for m in accounts.list_members(p) if m.get("user_id") == p.user_id), None)
            self.user_email = (me or {}).get("email") or ""
        except ServiceError:
            self.team_name = self.user_email = ""

    def start_session(self, p: Principal, token: str) -> None:
        self.session_token = token
        self._remember(p)
        self.auth_checked = True

    @rx.event
    def require_login(self) -> Any:
        """``on_load`` of every signed-in page: refresh who we are, or go to the login page."""
        p = self.principal()
        self.auth_checked = True
        if p is None:
            self._forget()
            return rx.redirect(LOGIN_PATH)
        self._remember(p)
        return None

    @rx.event
    def redirect_if_logged_in(self) -> Any:
        """``on_load`` of /login and /signup: a signed-in user goes straight to the app."""
        p = self.principal()
        self.auth_checked = True
        if p is not None:
            self._remember(p)
            return rx.redirect(HOME_PATH)
        return None

    @rx.event
    def logout(self) -> Any:
        if self.session_token:
            accounts.logout(self.session_token)
        self._forget()
        return [rx.remove_cookie(SESSION_COOKIE, {"path": "/"}), rx.redirect(LOGIN_PATH)]


def form_text(form: dict[str, Any], key: str) -> str:
    """A form field as text (a missing or non-text field is empty)."""
    value = form.get(key, "")
    return value if isinstance(value, str) else ""
