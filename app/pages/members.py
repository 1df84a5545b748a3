"""``/settings/members``: members and pending invitations; invite, change role, remove.

Owners and admins only (the service enforces it too: the page only hides what it would refuse).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from app.components.forms import (
    admin_only,
    confirm_dialog,
    error_callout,
    page_header,
    role_badge,
    success_callout,
)
from app.components.layout import template
from app.state import State, form_text
from core.errors import ServiceError
from tenants import roles
from tenants import service as accounts


@dataclasses.dataclass
class MemberRow:
    id: str = ""
    email: str = ""
    name: str = ""
    role: str = ""
    since: str = ""  # YYYY-MM-DD
    invitation: bool = False
    is_me: bool = False
    manageable: bool = False


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


class MembersState(State):
    rows: list[MemberRow] = []
    assignable: list[str] = []
    error: str = ""
    notice: str = ""
    invite_error: str = ""
    confirm_id: str = ""
    confirm_email: str = ""

    def _refresh(self) -> None:
        p = self.principal()
        if p is None or not p.allows("admin"):
            self.rows, self.assignable = [], []
            return
        me = p.role or "admin"
        self.assignable = [r for r in roles.ROLES if roles.can_assign(me, r)]
        rows = []
        for m in accounts.list_members(p):
            invitation = bool(m.get("invitation"))
            date = (m.get("expires_at") if invitation else m.get("since")) or ""
            rows.append(
                MemberRow(
                    id=m["id"],
                    email=m.get("email") or "",
                    name=m.get("name") or "",
                    role=m["role"],
                    since=date[:10],
                    invitation=invitation,
                    is_me=m.get("user_id") == p.user_id,
                    manageable=not invitation
                    and m.get("user_id") != p.user_id
                    and roles.can_manage(me, m["role"]),
                )
            )
        self.rows = rows

    @rx.event
    def load(self) -> None:
        self.error = self.notice = self.invite_error = ""
        self._refresh()

    def _act(self, action: Any, done: str) -> None:
        self.error = self.notice = ""
        p = self.principal()
        if p is None:
            self.error = "Your session has ended; log in again."
            return
        try:
            action(p)
        except ServiceError as e:
            self.error = sentence(e.message)
        else:
            self.notice = done
        self._refresh()

    @rx.event
    def invite(self, form: dict[str, Any]) -> Any:
        self.invite_error = self.notice = self.error = ""
        email, role = form_text(form, "email"), form_text(form, "role") or "editor"
        p = self.principal()
        if p is None:
            self.invite_error = "Your session has ended; log in again."
            return None
        try:
            inv, _token = accounts.invite(p, email, role)
        except ServiceError as e:
            self.invite_error = sentence(e.message)
            return None
        self.notice = f"Invitation sent to {inv.email} as {inv.role}."
        self._refresh()
        return rx.set_value("invite-email", "")

    @rx.event
    def change_role(self, membership_id: str, role: str) -> None:
        self._act(lambda p: accounts.change_role(p, membership_id, role), f"Role changed to {role}.")

    @rx.event
    def ask_remove(self, membership_id: str, email: str) -> None:
        self.confirm_id, self.confirm_email = membership_id, email

    @rx.event
    def cancel_remove(self) -> None:
        self.confirm_id = self.confirm_email = ""

    @rx.event
    def confirm_remove(self) -> None:
        target, email = self.confirm_id, self.confirm_email
        self.confirm_id = self.confirm_email = ""
        if target:
            self._act(lambda p: accounts.remove_member(p, target), f"{email} was removed from the team.")


def member_row(row: rx.Var[MemberRow]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.flex(
                rx.text(row.email, weight="medium", custom_attrs={"data-testid": "member-email"}),
                rx.cond(row.is_me, rx.badge("you", variant="outline", color_scheme="gray", size="1")),
                align="center",
                gap="8px",
            ),
            rx.cond(row.name != "", rx.text(row.name, size="1", color=rx.color("gray", 10))),
        ),
        rx.table.cell(
            rx.cond(
                row.invitation,
                rx.badge("Invited", color_scheme="amber", variant="soft", size="2"),
                rx.badge("Active", color_scheme="green", variant="soft", size="2"),
            )
        ),
        rx.table.cell(role_badge(row.role)),
        rx.table.cell(
            rx.text(
                rx.cond(row.invitation, "expires " + row.since, row.since),
                size="2",
                color=rx.color("gray", 11),
            )
        ),
        rx.table.cell(
            rx.cond(
                row.manageable,
                rx.flex(
                    rx.select(
                        MembersState.assignable,
                        value=row.role,
                        on_change=lambda v: MembersState.change_role(row.id, v),
                        size="1",
                        custom_attrs={"aria-label": "Role", "data-testid": "role-select"},
                    ),
                    rx.icon_button(
                        rx.icon("trash-2", size=14),
                        variant="soft",
                        color_scheme="red",
                        size="1",
                        on_click=MembersState.ask_remove(row.id, row.email),
                        custom_attrs={"aria-label": "Remove member", "data-testid": "remove-member"},
                    ),
                    gap="8px",
                    align="center",
                    justify="end",
                ),
            ),
            text_align="right",
        ),
        custom_attrs={"data-member": row.email},
        vertical_align="middle",
    )


def invite_card() -> rx.Component:
    return rx.card(
        rx.form(
            rx.flex(
                rx.flex(
                    rx.text("Invite a teammate", size="3", weight="bold"),
                    rx.text(
                        "They get an email with a link that is valid for 7 days and works once.",
                        size="2",
                        color=rx.color("gray", 11),
                    ),
                    direction="column",
                    gap="2px",
                ),
                rx.flex(
                    rx.input(
                        name="email",
                        id="invite-email",
                        type="email",
                        placeholder="teammate@company.com",
                        size="2",
                        flex="1",
                        min_width="220px",
                        custom_attrs={"aria-label": "Email"},
                    ),
                    rx.select(
                        MembersState.assignable,
                        name="role",
                        default_value="editor",
                        size="2",
                        custom_attrs={"aria-label": "Role", "data-testid": "invite-role"},
                    ),
                    rx.button(rx.icon("send", size=14), "Send invitation", type="submit", id="invite-submit"),
                    gap="10px",
                    wrap="wrap",
                    align="center",
                ),
                rx.cond(
                    MembersState.invite_error != "",
                    rx.text(
                        MembersState.invite_error,
                        size="1",
                        color=rx.color("red", 11),
                        custom_attrs={"data-testid": "invite-error", "role": "alert"},
                    ),
                ),
                direction="column",
                gap="12px",
            ),
            on_submit=MembersState.invite,
            no_validate=True,  # the service is the one judge: same messages for every client
            id="invite-form",
        ),
        width="100%",
    )


def remove_dialog() -> rx.Component:
    return confirm_dialog(
        "Remove member",
        rx.text(
            "Remove ",
            rx.text.strong(MembersState.confirm_email),
            " from the team? They lose access at once; their sessions are ended.",
        ),
        "Remove",
        open=MembersState.confirm_id != "",
        on_cancel=MembersState.cancel_remove,
        on_confirm=MembersState.confirm_remove,
        confirm_id="confirm-remove",
    )


def members_table() -> rx.Component:
    return rx.card(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Member"),
                    rx.table.column_header_cell("Status", width="110px"),
                    rx.table.column_header_cell("Role", width="110px"),
                    rx.table.column_header_cell("Since", width="200px"),
                    rx.table.column_header_cell("", width="170px"),
                )
            ),
            rx.table.body(rx.foreach(MembersState.rows, member_row)),
            variant="ghost",
            size="2",
            width="100%",
            id="members-table",
        ),
        padding="8px 16px",
        width="100%",
    )


@template(nav="/settings/members")
def page() -> rx.Component:
    return rx.flex(
        page_header("Members", "Who can use this team's workspace, and what they may do."),
        admin_only(
            rx.flex(
                invite_card(),
                success_callout(MembersState.notice, "members-notice"),
                error_callout(MembersState.error, "members-error"),
                members_table(),
                remove_dialog(),
                direction="column",
                gap="20px",
                width="100%",
            )
        ),
        direction="column",
        gap="24px",
    )
