"""``/invite?token=...``: accept an invitation. New people choose a password; then they are signed in."""

from __future__ import annotations

from typing import Any

import reflex as rx

from app.components.forms import auth_shell, error_callout, field
from app.state import HOME_PATH, State, form_text
from core.errors import ServiceError
from tenants import service as accounts
from tenants.passwords import MIN_LENGTH

FIELD_OF_CODE = {"weak_password": "password", "password_required": "password"}


class InviteState(State):
    error: str = ""
    error_field: str = ""

    def _token(self) -> str:
        token = self.router.url.query_parameters.get("token", "")
        return token if isinstance(token, str) else ""

    @rx.event
    def load(self) -> None:
        self.error = self.error_field = ""
        if not self._token():
            self.error = "This invitation link is not valid: it has no token. Open the link from your email."

    @rx.event
    def submit(self, form: dict[str, Any]) -> Any:
        self.error = self.error_field = ""
        password = form_text(form, "password")
        try:
            p, token = accounts.accept_invitation(
                self._token(),
                password=password or None,
                name=form_text(form, "name")[:200],
                ip=self.client_ip(),
            )
        except ServiceError as e:
            self.error = e.message[:1].upper() + e.message[1:]
            self.error_field = FIELD_OF_CODE.get(e.code, "")
            return None
        self.start_session(p, token)
        return rx.redirect(HOME_PATH)

    @rx.var
    def general_error(self) -> str:
        return self.error if self.error_field == "" else ""


def page() -> rx.Component:
    return auth_shell(
        "Join your team",
        "You were invited to a flowdesk workspace. New here? Choose a password to create your account.",
        rx.form(
            rx.flex(
                field("Your name", "name", placeholder="Ada Lovelace", autocomplete="name"),
                field(
                    "Password",
                    "password",
                    type="password",
                    hint=f"At least {MIN_LENGTH} characters. Leave empty if you already have an account.",
                    error=rx.cond(InviteState.error_field == "password", InviteState.error, ""),
                    autocomplete="new-password",
                ),
                error_callout(InviteState.general_error, "invite-error"),
                rx.button("Accept invitation", type="submit", size="3", width="100%", id="accept-submit"),
                direction="column",
                gap="16px",
            ),
            on_submit=InviteState.submit,
            no_validate=True,  # the service is the one judge: same messages for every client
            id="accept-form",
        ),
    )
