"""``/settings/api-keys``: list, create (the secret is shown once) and revoke API keys.

Owners and admins only. The secret exists in this state only between creation and the
dialog being closed; the list shows the prefix, never the key.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import reflex as rx

from app.components.forms import admin_only, confirm_dialog, error_callout, page_header, success_callout
from app.components.layout import template
from app.state import State, form_text
from core.errors import ServiceError
from tenants import service as accounts
from tenants.tokens import SCOPES

SCOPE_HELP = {
    "workflows:read": "List, read and export workflows",
    "workflows:write": "Push, publish and roll back workflows",
    "chat": "Start conversations and send messages",
    "admin": "Members, keys, secrets and audit log",
}


@dataclasses.dataclass
class KeyRow:
    id: str = ""
    name: str = ""
    prefix: str = ""
    scopes: list[str] = dataclasses.field(default_factory=list)
    created: str = ""
    last_used: str = ""
    revoked: bool = False
    revoked_on: str = ""


def _when(value: datetime | None, never: str = "Never") -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else never


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


class ApiKeysState(State):
    rows: list[KeyRow] = []
    chosen_scopes: list[str] = ["workflows:read"]
    error: str = ""
    notice: str = ""
    create_error: str = ""
    #: The new key's plaintext, shown once in the dialog and cleared when it closes.
    new_secret: str = ""
    new_name: str = ""
    confirm_id: str = ""
    confirm_name: str = ""

    def _refresh(self) -> None:
        p = self.principal()
        if p is None or not p.allows("admin"):
            self.rows = []
            return
        self.rows = [
            KeyRow(
                id=k.id,
                name=k.name,
                prefix=k.prefix,
                scopes=list(k.scopes),
                created=_when(k.created_at),
                last_used=_when(k.last_used_at),
                revoked=k.revoked_at is not None,
                revoked_on=_when(k.revoked_at, ""),
            )
            for k in reversed(accounts.list_api_keys(p))  # newest first
        ]

    @rx.event
    def load(self) -> None:
        self.error = self.notice = self.create_error = self.new_secret = ""
        self._refresh()

    @rx.event
    def toggle_scope(self, scope: str, checked: bool) -> None:
        if scope not in SCOPES:
            return
        chosen = set(self.chosen_scopes)
        chosen.add(scope) if checked else chosen.discard(scope)
        self.chosen_scopes = [s for s in SCOPES if s in chosen]

    @rx.event
    def create(self, form: dict[str, Any]) -> Any:
        self.create_error = self.notice = self.error = ""
        p = self.principal()
        if p is None:
            self.create_error = "Your session has ended; log in again."
            return None
        try:
            key, secret = accounts.create_api_key(p, form_text(form, "name"), list(self.chosen_scopes))
        except ServiceError as e:
            self.create_error = sentence(e.message)
            return None
        self.new_secret, self.new_name = secret, key.name
        self._refresh()
        return rx.set_value("key-name", "")

    @rx.event
    def close_secret(self) -> None:
        self.new_secret = self.new_name = ""

    @rx.event
    def ask_revoke(self, key_id: str, name: str) -> None:
        self.confirm_id, self.confirm_name = key_id, name

    @rx.event
    def cancel_revoke(self) -> None:
        self.confirm_id = self.confirm_name = ""

    @rx.event
    def confirm_revoke(self) -> None:
        target, name = self.confirm_id, self.confirm_name
        self.confirm_id = self.confirm_name = ""
        p = self.principal()
        if p is None or not target:
            return
        try:
            accounts.revoke_api_key(p, target)
        except ServiceError as e:
            self.error = sentence(e.message)
        else:
            self.notice = f"The key “{name}” was revoked; requests using it now fail."
        self._refresh()


def scope_checkbox(scope: str) -> rx.Component:
    return rx.el.label(
        rx.flex(
            rx.checkbox(
                checked=ApiKeysState.chosen_scopes.contains(scope),
                on_change=lambda checked: ApiKeysState.toggle_scope(scope, checked),
                custom_attrs={"data-scope": scope},
            ),
            rx.flex(
                rx.code(scope, size="2", variant="ghost"),
                rx.text(SCOPE_HELP.get(scope, ""), size="1", color=rx.color("gray", 10)),
                direction="column",
                gap="0",
            ),
            gap="8px",
            align="start",
        ),
        style={"cursor": "pointer"},
    )


def create_card() -> rx.Component:
    return rx.card(
        rx.form(
            rx.flex(
                rx.flex(
                    rx.text("Create an API key", size="3", weight="bold"),
                    rx.text(
                        "For the flowdesk CLI, CI pipelines and the REST API. Give each use its own key "
                        "and only the scopes it needs.",
                        size="2",
                        color=rx.color("gray", 11),
                    ),
                    direction="column",
                    gap="2px",
                ),
                rx.input(
                    name="name",
                    id="key-name",
                    placeholder="Key name, e.g. GitHub Actions deploy",
                    size="2",
                    max_width="420px",
                    custom_attrs={"aria-label": "Key name"},
                ),
                rx.grid(*(scope_checkbox(s) for s in SCOPES), columns="2", gap="12px", max_width="640px"),
                rx.cond(
                    ApiKeysState.create_error != "",
                    rx.text(
                        ApiKeysState.create_error,
                        size="1",
                        color=rx.color("red", 11),
                        custom_attrs={"data-testid": "create-key-error", "role": "alert"},
                    ),
                ),
                rx.box(
                    rx.button(rx.icon("key-round", size=14), "Create key", type="submit", id="create-key")
                ),
                direction="column",
                gap="14px",
            ),
            on_submit=ApiKeysState.create,
            no_validate=True,  # the service is the one judge: same messages for every client
            id="create-key-form",
        ),
        width="100%",
    )


def key_row(row: rx.Var[KeyRow]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.text(row.name, weight="medium", custom_attrs={"data-testid": "key-name"})
        ),
        rx.table.cell(rx.code(row.prefix + "…", size="2", custom_attrs={"data-testid": "key-prefix"})),
        rx.table.cell(
            rx.flex(
                rx.foreach(
                    row.scopes, lambda s: rx.badge(s, variant="surface", color_scheme="gray", size="1")
                ),
                gap="4px",
                wrap="wrap",
            )
        ),
        rx.table.cell(rx.text(row.created, size="2", color=rx.color("gray", 11))),
        rx.table.cell(rx.text(row.last_used, size="2", color=rx.color("gray", 11))),
        rx.table.cell(
            rx.cond(
                row.revoked,
                rx.badge(
                    "Revoked",
                    color_scheme="red",
                    variant="soft",
                    size="2",
                    title=row.revoked_on,
                    custom_attrs={"data-testid": "key-status"},
                ),
                rx.badge(
                    "Active",
                    color_scheme="green",
                    variant="soft",
                    size="2",
                    custom_attrs={"data-testid": "key-status"},
                ),
            )
        ),
        rx.table.cell(
            rx.cond(
                row.revoked,
                rx.fragment(),
                rx.button(
                    "Revoke",
                    variant="soft",
                    color_scheme="red",
                    size="1",
                    on_click=ApiKeysState.ask_revoke(row.id, row.name),
                    custom_attrs={"data-testid": "revoke-key"},
                ),
            ),
            text_align="right",
        ),
        custom_attrs={"data-key": row.prefix},
        vertical_align="middle",
    )


def keys_table() -> rx.Component:
    return rx.card(
        rx.cond(
            ApiKeysState.rows.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell("Name"),
                        rx.table.column_header_cell("Key", width="150px"),
                        rx.table.column_header_cell("Scopes"),
                        rx.table.column_header_cell("Created", width="190px"),
                        rx.table.column_header_cell("Last used", width="190px"),
                        rx.table.column_header_cell("Status", width="100px"),
                        rx.table.column_header_cell("", width="90px"),
                    )
                ),
                rx.table.body(rx.foreach(ApiKeysState.rows, key_row)),
                variant="ghost",
                size="2",
                width="100%",
                id="keys-table",
            ),
            rx.flex(
                rx.icon("key-round", size=26, color=rx.color("gray", 9)),
                rx.text("No API keys yet", weight="medium"),
                rx.text(
                    "Create one above to use the CLI or the REST API.", size="2", color=rx.color("gray", 10)
                ),
                direction="column",
                align="center",
                gap="6px",
                padding="32px",
                id="keys-empty",
            ),
        ),
        padding="8px 16px",
        width="100%",
    )


def secret_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Your new API key"),
            rx.dialog.description(
                rx.text("“", ApiKeysState.new_name, "” was created. Copy the key now.", size="2"),
            ),
            rx.callout(
                "This is the only time the key is shown. flowdesk stores only a hash of it; if you lose "
                "it, revoke it and create a new one.",
                icon="triangle-alert",
                color_scheme="amber",
                size="1",
                margin_y="12px",
            ),
            rx.flex(
                rx.code(
                    ApiKeysState.new_secret,
                    size="3",
                    padding="10px 12px",
                    flex="1",
                    word_break="break-all",
                    custom_attrs={"data-testid": "new-secret"},
                ),
                rx.button(
                    rx.icon("copy", size=14),
                    "Copy",
                    variant="soft",
                    on_click=[rx.set_clipboard(ApiKeysState.new_secret), rx.toast.success("Copied")],
                    id="copy-secret",
                ),
                gap="10px",
                align="center",
            ),
            rx.flex(
                rx.dialog.close(
                    rx.button("I have saved it", on_click=ApiKeysState.close_secret, id="close-secret")
                ),
                justify="end",
                margin_top="20px",
            ),
            max_width="560px",
        ),
        open=ApiKeysState.new_secret != "",
    )


def revoke_dialog() -> rx.Component:
    return confirm_dialog(
        "Revoke API key",
        rx.text(
            "Revoke “",
            rx.text.strong(ApiKeysState.confirm_name),
            "”? Anything using it stops working at once. This cannot be undone.",
        ),
        "Revoke key",
        open=ApiKeysState.confirm_id != "",
        on_cancel=ApiKeysState.cancel_revoke,
        on_confirm=ApiKeysState.confirm_revoke,
        confirm_id="confirm-revoke",
    )


@template(nav="/settings/api-keys")
def page() -> rx.Component:
    return rx.flex(
        page_header(
            "API keys", "Keys authenticate the CLI and REST API calls as this team, limited to their scopes."
        ),
        admin_only(
            rx.flex(
                create_card(),
                success_callout(ApiKeysState.notice, "keys-notice"),
                error_callout(ApiKeysState.error, "keys-error"),
                keys_table(),
                secret_dialog(),
                revoke_dialog(),
                direction="column",
                gap="20px",
                width="100%",
            )
        ),
        direction="column",
        gap="24px",
    )
