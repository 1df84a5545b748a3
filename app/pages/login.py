"""``/login``: email + password. One generic message for a wrong email or password."""

from __future__ import annotations

from typing import Any

import reflex as rx

from app.components.forms import auth_shell, error_callout, field
from app.state import HOME_PATH, State, form_text
from core.errors import ServiceError
from tenants import service as accounts


class LoginState(State):
    error: str = ""

    @rx.event
    def clear(self) -> None:
        self.error = ""

    @rx.event
    def submit(self, form: dict[str, Any]) -> Any:
        self.error = ""
        try:
            p, token = accounts.login(
                form_text(form, "email"), form_text(form, "password"), ip=self.client_ip()
            )
        except ServiceError as e:
            # The service already words it generically (no "unknown email" vs "wrong password").
            self.error = e.message[:1].upper() + e.message[1:]
            return None
        self.start_session(p, token)
        return rx.redirect(HOME_PATH)


def _sso_button() -> rx.Component:
    """'Sign in with SSO' when OIDC is configured (decided when the app is built)."""
    from core.settings import get_settings
    from tenants.oidc import oidc_enabled

    if not oidc_enabled(get_settings()):
        return rx.fragment()
    return rx.link(
        rx.button("Sign in with SSO", variant="outline", size="3", width="100%", id="login-sso"),
        # The backend's origin: the same as the page's in prod (one port), :8000 in dev.
        href=f"{rx.config.get_config().api_url.rstrip('/')}/auth/oidc/login",
        width="100%",
    )


def page() -> rx.Component:
    return auth_shell(
        "Log in",
        "Welcome back. Sign in to your team's workspace.",
        rx.form(
            rx.flex(
                field("Email", "email", type="email", placeholder="you@company.com", autocomplete="email"),
                field("Password", "password", type="password", autocomplete="current-password"),
                error_callout(LoginState.error, "login-error"),
                rx.button("Log in", type="submit", size="3", width="100%", id="login-submit"),
                direction="column",
                gap="16px",
            ),
            on_submit=LoginState.submit,
            no_validate=True,  # the service is the one judge: same messages for every client
            id="login-form",
        ),
        _sso_button(),
        rx.text(
            "New to flowdesk? ",
            rx.link("Create a team", href="/signup", id="to-signup"),
            size="2",
            color=rx.color("gray", 11),
            text_align="center",
        ),
    )
