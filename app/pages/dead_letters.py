"""``/settings/dead-letters``: the team's turns that failed every retry; retry or drop them.

Owners and admins only. The state is a thin shell over ``runtime.dlq`` scoped to the signed-in
team (the operator's ``flowdesk dlq`` sees every team's).
"""

from __future__ import annotations

import dataclasses

import reflex as rx

from app.components.forms import admin_only, confirm_dialog, error_callout, page_header, success_callout
from app.components.layout import template
from app.state import State
from core.errors import ServiceError
from runtime import dlq
from runtime import service as svc


@dataclasses.dataclass
class DeadLetterRow:
    job_id: str = ""
    turn_id: str = ""
    conversation_id: str = ""
    message: str = ""
    failed_at: str = ""
    error: str = ""
    queue: str = ""


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


class DeadLettersState(State):
    rows: list[DeadLetterRow] = []
    error: str = ""
    notice: str = ""
    confirm_id: str = ""

    def _refresh(self) -> None:
        p = self.principal()
        if p is None or not p.allows("admin"):
            self.rows = []
            return
        rows = []
        for d in dlq.list_dead(p.tenant_id):
            try:
                turn = svc.get_turn(p.tenant_id, d.turn_id)
            except ServiceError:  # the conversation was deleted since
                conversation, text = "", "(message erased)"
            else:
                conversation, text = turn.conversation_id, turn.text[:200]
            rows.append(
                DeadLetterRow(
                    job_id=d.job_id,
                    turn_id=d.turn_id,
                    conversation_id=conversation,
                    message=text,
                    failed_at=d.failed_at.strftime("%Y-%m-%d %H:%M UTC") if d.failed_at else "",
                    error=d.error,
                    queue=d.queue.removeprefix("flowdesk-"),
                )
            )
        self.rows = rows

    @rx.event
    def load(self) -> None:
        self.error = self.notice = self.confirm_id = ""
        self._refresh()

    @rx.event
    def retry(self, job_id: str) -> None:
        self.error = self.notice = ""
        p = self.principal()
        if p is None or not p.allows("admin"):
            self.error = "Your session has ended; log in again."
            return
        try:
            done = dlq.retry(job_id, p.tenant_id)
        except ServiceError as e:
            self.error = sentence(e.message)
        else:
            self.notice = f"Turn {done.turn_id} was queued again; the bot answers it in a moment."
        self._refresh()

    @rx.event
    def ask_drop(self, job_id: str) -> None:
        self.confirm_id = job_id

    @rx.event
    def cancel_drop(self) -> None:
        self.confirm_id = ""

    @rx.event
    def confirm_drop(self) -> None:
        job_id, self.confirm_id = self.confirm_id, ""
        self.error = self.notice = ""
        p = self.principal()
        if p is None or not p.allows("admin") or not job_id:
            return
        try:
            done = dlq.drop(job_id, p.tenant_id)
        except ServiceError as e:
            self.error = sentence(e.message)
        else:
            self.notice = f"Dropped turn {done.turn_id}; it stays failed."
        self._refresh()


def letter_row(row: rx.Var[DeadLetterRow]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.flex(
                rx.text(row.message, weight="medium", custom_attrs={"data-testid": "dead-message"}),
                rx.text("Turn ", rx.code(row.turn_id, size="1"), size="1", color=rx.color("gray", 10)),
                direction="column",
                gap="2px",
            )
        ),
        rx.table.cell(
            rx.text(
                row.error,
                size="2",
                color=rx.color("red", 11),
                custom_attrs={"data-testid": "dead-error"},
                style={"word_break": "break-word"},
            )
        ),
        rx.table.cell(rx.text(row.failed_at, size="2", color=rx.color("gray", 11))),
        rx.table.cell(
            rx.flex(
                rx.button(
                    rx.icon("rotate-ccw", size=14),
                    "Retry",
                    size="1",
                    variant="soft",
                    on_click=DeadLettersState.retry(row.job_id),
                    custom_attrs={"data-testid": "retry-dead-letter"},
                ),
                rx.button(
                    rx.icon("trash-2", size=14),
                    "Drop",
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    on_click=DeadLettersState.ask_drop(row.job_id),
                    custom_attrs={"data-testid": "drop-dead-letter"},
                ),
                gap="8px",
                justify="end",
            ),
            text_align="right",
        ),
        custom_attrs={"data-job": row.job_id},
        vertical_align="middle",
    )


def letters_table() -> rx.Component:
    return rx.cond(
        DeadLettersState.rows.length() > 0,
        rx.card(
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell("Message"),
                        rx.table.column_header_cell("Error"),
                        rx.table.column_header_cell("Failed", width="170px"),
                        rx.table.column_header_cell("", width="180px"),
                    )
                ),
                rx.table.body(rx.foreach(DeadLettersState.rows, letter_row)),
                variant="ghost",
                size="2",
                width="100%",
                id="dead-letters-table",
            ),
            padding="8px 16px",
            width="100%",
        ),
        rx.card(
            rx.flex(
                rx.icon("circle-check", size=24, color=rx.color("green", 10)),
                rx.text("No failed turns. Every message got an answer.", size="2"),
                align="center",
                gap="10px",
            ),
            id="no-dead-letters",
            width="100%",
        ),
    )


def drop_dialog() -> rx.Component:
    return confirm_dialog(
        "Drop failed turn",
        rx.text(
            "Drop this failed turn? It cannot be retried afterwards; the user already got an apology "
            "and the conversation stays with your team."
        ),
        "Drop",
        open=DeadLettersState.confirm_id != "",
        on_cancel=DeadLettersState.cancel_drop,
        on_confirm=DeadLettersState.confirm_drop,
        confirm_id="confirm-drop",
    )


@template(nav="/settings/dead-letters")
def page() -> rx.Component:
    return rx.flex(
        page_header(
            "Failed turns",
            "Messages the bot could not answer after every retry. The user got an apology and the "
            "conversation went to the handoff queue. Fix the cause, then retry.",
        ),
        admin_only(
            rx.flex(
                success_callout(DeadLettersState.notice, "dead-letters-notice"),
                error_callout(DeadLettersState.error, "dead-letters-error"),
                rx.flex(
                    rx.button(
                        rx.icon("refresh-cw", size=14),
                        "Refresh",
                        variant="soft",
                        color_scheme="gray",
                        size="1",
                        on_click=DeadLettersState.load,
                        id="refresh-dead-letters",
                    ),
                    justify="end",
                ),
                letters_table(),
                drop_dialog(),
                direction="column",
                gap="16px",
                width="100%",
            )
        ),
        direction="column",
        gap="24px",
    )
