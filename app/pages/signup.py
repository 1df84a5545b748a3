"""``/signup``: a new team and its owner; on success the owner is signed in."""

from __future__ import annotations

from typing import Any

import reflex as rx

from app.components.forms import auth_shell, error_callout, field
from app.state import HOME_PATH, State, form_text
from core.errors import ServiceError
from tenants import service as accounts
from tenants.passwords import MIN_LENGTH

#: Which input a service error code belongs to (anything else is shown above the button).
FIELD_OF_CODE = {
    "invalid_name": "team",
    "invalid_email": "email",
    "email_taken": "email",
    "weak_password": "password",
}


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


class SignupState(State):
    error: str = ""
    error_field: str = ""

    @rx.event
    def clear(self) -> None:
        self.error = self.error_field = ""

    @rx.event
    def submit(self, form: dict[str, Any]) -> Any:
        self.error = self.error_field = ""
        try:
            p, token = accounts.signup(
                form_text(form, "email"),
                form_text(form, "password"),
                form_text(form, "team"),
                name=form_text(form, "name")[:200],
                ip=self.client_ip(),
            )
        except ServiceError as e:
            self.error = sentence(e.message)
            self.error_field = FIELD_OF_CODE.get(e.code, "")
            return None
        self.start_session(p, token)
        return rx.redirect(HOME_PATH)

    @rx.var
    def general_error(self) -> str:
        return self.error if self.error_field == "" else ""


def _err(name: str) -> rx.Var[str]:
    return rx.cond(SignupState.error_field == name, SignupState.error, "")


def page() -> rx.Component:
    return auth_shell(
        "Create your team",
        "Set up a workspace for your support flows. You will be its owner.",
        rx.form(
            rx.flex(
                field("Team name", "team", placeholder="Acme Support", error=_err("team")),
                field("Your name", "name", placeholder="Ada Lovelace", autocomplete="name"),
                field(
                    "Work email",
                    "email",
                    type="email",
                    placeholder="you@company.com",
                    error=_err("email"),
                    autocomplete="email",
                ),
                field(
                    "Password",
                    "password",
                    type="password",
                    hint=f"At least {MIN_LENGTH} characters; avoid common passwords.",
                    error=_err("password"),
                    autocomplete="new-password",
                ),
                error_callout(SignupState.general_error, "signup-error"),
                rx.button("Create team", type="submit", size="3", width="100%", id="signup-submit"),
                direction="column",
                gap="16px",
            ),
            on_submit=SignupState.submit,
            no_validate=True,  # the service is the one judge: same messages for every client
            id="signup-form",
        ),
        rx.text(
            "Already have an account? ",
            rx.link("Log in", href="/login", id="to-login"),
            size="2",
            color=rx.color("gray", 11),
            text_align="center",
        ),
    )
