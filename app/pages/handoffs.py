"""``/handoffs``: the team's conversations waiting for a human; release one back to the bot.

Members who may chat (owner, admin, editor) see the queue; the state is a thin shell over
``runtime.service.handoffs`` / ``release_handoff``. The full agent inbox comes later.
"""

from __future__ import annotations

import dataclasses

import reflex as rx

from app.components.forms import error_callout, page_header, success_callout
from app.components.layout import template
from app.state import State
from core.errors import ServiceError
from runtime import service as svc
from tenants.tokens import CHAT


@dataclasses.dataclass
class MessageRow:
    seq: int = 0
    text: str = ""
    reply: str = ""


@dataclasses.dataclass
class HandoffRow:
    id: str = ""
    workflow: str = ""
    status: str = ""
    reason: str = ""
    priority: str = ""
    queue: str = ""
    since: str = ""
    messages: list[MessageRow] = dataclasses.field(default_factory=list)


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


class HandoffsState(State):
    rows: list[HandoffRow] = []
    allowed: bool = False
    error: str = ""
    notice: str = ""

    def _refresh(self) -> None:
        p = self.principal()
        self.allowed = p is not None and p.allows(CHAT)
        if p is None or not self.allowed:
            self.rows = []
            return
        rows = []
        for h in svc.handoffs(p.tenant_id):
            ho = h["handoff"] or {}
            rows.append(
                HandoffRow(
                    id=h["id"],
                    workflow=h["workflow"],
                    status=h["status"].replace("_", " "),
                    reason=ho.get("reason") or "",
                    priority=ho.get("priority") or "normal",
                    queue=ho.get("queue") or "",
                    since=(ho.get("at") or "")[:16].replace("T", " "),
                    messages=[
                        MessageRow(m["seq"], m["text"] or "", m["reply"] or "") for m in h["last_messages"]
                    ],
                )
            )
        self.rows = rows

    @rx.event
    def load(self) -> None:
        self.error = self.notice = ""
        self._refresh()

    @rx.event
    def release(self, conversation_id: str) -> None:
        self.error = self.notice = ""
        p = self.principal()
        if p is None or not p.allows(CHAT):
            self.error = "Your session has ended; log in again."
            return
        try:
            svc.release_handoff(p.tenant_id, conversation_id)
        except ServiceError as e:
            self.error = sentence(e.message)
        else:
            self.notice = "The bot answers this conversation again."
        self._refresh()


def message_line(m: rx.Var[MessageRow]) -> rx.Component:
    return rx.flex(
        rx.text(rx.text.strong("User: "), m.text, size="2"),
        rx.cond(
            m.reply != "",
            rx.text(rx.text.strong("Bot: "), m.reply, size="2", color=rx.color("gray", 11)),
        ),
        direction="column",
        gap="2px",
    )


def handoff_card(row: rx.Var[HandoffRow]) -> rx.Component:
    return rx.card(
        rx.flex(
            rx.flex(
                rx.flex(
                    rx.text(row.workflow, weight="bold", size="3"),
                    rx.badge(row.status, color_scheme="amber", variant="soft"),
                    rx.badge(
                        row.priority,
                        color_scheme=rx.cond(row.priority == "high", "red", "gray"),
                        variant="outline",
                        custom_attrs={"data-testid": "handoff-priority"},
                    ),
                    rx.cond(row.queue != "", rx.badge("queue: " + row.queue, variant="outline")),
                    gap="8px",
                    align="center",
                    wrap="wrap",
                ),
                rx.button(
                    rx.icon("bot", size=14),
                    "Release to bot",
                    size="1",
                    on_click=HandoffsState.release(row.id),
                    custom_attrs={"data-testid": "release-handoff"},
                ),
                justify="between",
                align="center",
                gap="12px",
            ),
            rx.text(
                row.reason,
                size="2",
                color=rx.color("gray", 11),
                custom_attrs={"data-testid": "handoff-reason"},
                style={"word_break": "break-word"},
            ),
            rx.text(
                "Since " + row.since + " UTC · conversation " + row.id, size="1", color=rx.color("gray", 10)
            ),
            rx.separator(size="4"),
            rx.flex(rx.foreach(row.messages, message_line), direction="column", gap="8px"),
            direction="column",
            gap="10px",
        ),
        width="100%",
        custom_attrs={"data-conversation": row.id},
    )


@template(nav="/handoffs")
def page() -> rx.Component:
    return rx.flex(
        page_header(
            "Handoffs",
            "Conversations waiting for a person. The bot stays silent in them until you release them.",
        ),
        rx.cond(
            State.auth_checked,
            rx.cond(
                HandoffsState.allowed,
                rx.flex(
                    success_callout(HandoffsState.notice, "handoffs-notice"),
                    error_callout(HandoffsState.error, "handoffs-error"),
                    rx.cond(
                        HandoffsState.rows.length() > 0,
                        rx.flex(
                            rx.foreach(HandoffsState.rows, handoff_card),
                            direction="column",
                            gap="12px",
                            id="handoffs-list",
                        ),
                        rx.card(
                            rx.text("Nobody is waiting for a person right now.", size="2"),
                            id="no-handoffs",
                        ),
                    ),
                    direction="column",
                    gap="16px",
                    width="100%",
                ),
                rx.card(
                    rx.text("Your role cannot take over conversations; ask an admin.", size="2"),
                    id="handoffs-refused",
                ),
            ),
        ),
        direction="column",
        gap="24px",
    )
