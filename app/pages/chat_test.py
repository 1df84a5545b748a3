"""``/workflows/[id]/test``: chat with the draft, see each turn's route and trace, save it as a test.

Layout only (``ChatTestState`` does the work): the chat on the left, the read-only canvas with
the turn's path lit in the middle, the router's decision and the per-node trace on the right.
"""

from __future__ import annotations

import reflex as rx

from app.components.flow import flow_editor
from app.components.layout import workspace
from app.pages.chat_test_state import ChatMessage, ChatTestState, NodeRow

TOOLBAR_HEIGHT = "56px"
CHAT_WIDTH = "350px"
TRACE_WIDTH = "370px"
MONO = "var(--code-font-family)"
EXAMPLES = ("hi there", "where is my order 48213", "I want to return my shoes")


def testid(name: str) -> dict[str, str]:
    return {"data-testid": name}


# ---------------------------------------------------------------- toolbar


def toolbar() -> rx.Component:
    return rx.flex(
        rx.link(
            rx.icon_button(rx.icon("arrow-left", size=16), variant="ghost", color_scheme="gray", size="2"),
            href=f"/workflows/{ChatTestState.slug}/edit",
            aria_label="Back to the editor",
        ),
        rx.flex(
            rx.flex(
                rx.text(ChatTestState.wf_name, size="3", weight="bold", truncate=True, id="wf-title"),
                rx.badge(
                    rx.icon("flask-conical", size=12), "Test chat", color_scheme="violet", variant="soft"
                ),
                gap="8px",
                align="center",
            ),
            rx.text(
                "Talking to the ",
                rx.code(ChatTestState.slug, size="1", variant="ghost", color_scheme="gray"),
                " draft through the real runtime",
                size="1",
                color=rx.color("gray", 10),
            ),
            direction="column",
            gap="1px",
            min_width="0",
        ),
        rx.spacer(),
        rx.cond(
            ChatTestState.save_message != "",
            rx.text(
                rx.icon(
                    rx.cond(ChatTestState.save_ok, "circle-check", "circle-alert"),
                    size=14,
                    display="inline",
                    vertical_align="-2px",
                    margin_right="4px",
                ),
                ChatTestState.save_message,
                size="1",
                color=rx.cond(ChatTestState.save_ok, rx.color("green", 11), rx.color("red", 11)),
                id="save-message",
            ),
        ),
        rx.tooltip(
            rx.badge(
                rx.icon("list-checks", size=12),
                ChatTestState.cases,
                rx.cond(ChatTestState.cases == 1, " test case", " test cases"),
                color_scheme=rx.cond(ChatTestState.cases > 0, "green", "gray"),
                variant="soft",
                size="2",
                id="case-count",
            ),
            content="Publishing replays every test case and is refused when one fails",
        ),
        rx.button(
            rx.icon("rotate-ccw", size=15),
            "Reset",
            on_click=ChatTestState.new_conversation,
            variant="soft",
            color_scheme="gray",
            id="reset-chat",
        ),
        save_dialog(),
        rx.link(
            rx.button(rx.icon("pencil", size=15), "Edit", variant="soft", color_scheme="gray"),
            href=f"/workflows/{ChatTestState.slug}/edit",
            id="edit-link",
        ),
        align="center",
        gap="10px",
        height=TOOLBAR_HEIGHT,
        padding_x="14px",
        background_color=rx.color("gray", 1),
        border_bottom=f"1px solid {rx.color('gray', 5)}",
    )


def save_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.trigger(
            rx.button(
                rx.icon("save", size=15),
                "Save as test case",
                disabled=~ChatTestState.can_save,
                id="save-case",
            ),
        ),
        rx.dialog.content(
            rx.dialog.title("Save this chat as a test case"),
            rx.dialog.description(
                "Each of your messages becomes a turn that must route to the same intent, run the "
                "same path and answer with the same opening words. `flowdesk test` and publishing "
                "replay it.",
                size="2",
                color=rx.color("gray", 11),
                margin_bottom="14px",
            ),
            rx.text("Name", as_="label", size="2", weight="medium", html_for="case-name"),
            rx.input(
                value=ChatTestState.case_name,
                on_change=ChatTestState.set_case_name,
                id="case-name",
                placeholder="e.g. tracks a shipped order",
                max_length=200,
                margin_top="4px",
            ),
            rx.text(
                ChatTestState.turn_count,
                rx.cond(ChatTestState.turn_count == 1, " turn", " turns"),
                " will be saved.",
                size="1",
                color=rx.color("gray", 10),
                margin_top="6px",
            ),
            rx.cond(
                (ChatTestState.save_message != "") & ~ChatTestState.save_ok,
                rx.callout(ChatTestState.save_message, icon="circle-alert", color_scheme="red", size="1"),
            ),
            rx.flex(
                rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray")),
                rx.button("Save test case", on_click=ChatTestState.save_case, id="confirm-save-case"),
                gap="8px",
                justify="end",
                margin_top="16px",
            ),
            max_width="460px",
        ),
        open=ChatTestState.save_open,
        on_open_change=ChatTestState.open_save,
    )


# ---------------------------------------------------------------- chat


def bubble(m: rx.Var[ChatMessage]) -> rx.Component:
    user = m.role == "user"
    selected = (m.turn == ChatTestState.shown) & (m.turn >= 0)
    return rx.flex(
        rx.box(
            rx.cond(
                m.pending & (m.text == ""),
                rx.flex(rx.spinner(size="1"), rx.text("thinking…", size="2"), gap="8px", align="center"),
                rx.text(m.text, size="2", white_space="pre-wrap", line_height="1.45"),
            ),
            rx.cond(
                ~user & (m.intent != ""),
                rx.flex(
                    rx.badge(
                        rx.icon("git-fork", size=11),
                        m.intent,
                        variant="soft",
                        color_scheme="violet",
                        size="1",
                    ),
                    rx.cond(
                        m.turn >= 0,
                        rx.text("trace", rx.icon("chevron-right", size=11, display="inline"), size="1"),
                    ),
                    gap="8px",
                    align="center",
                    justify="between",
                    margin_top="6px",
                    color=rx.color("gray", 10),
                ),
            ),
            padding="9px 12px",
            border_radius=rx.cond(user, "14px 14px 4px 14px", "14px 14px 14px 4px"),
            max_width="86%",
            background_color=rx.cond(
                user, rx.color("accent", 9), rx.cond(m.failed, rx.color("red", 3), rx.color("gray", 3))
            ),
            color=rx.cond(user, "white", rx.color("gray", 12)),
            border=rx.cond(selected, f"1.5px solid {rx.color('violet', 8)}", "1.5px solid transparent"),
            cursor=rx.cond(m.turn >= 0, "pointer", "default"),
            on_click=rx.cond(m.turn >= 0, ChatTestState.show_turn(m.turn), rx.noop()),
            custom_attrs={"data-role": m.role, "data-pending": rx.cond(m.pending, "1", "")},
            class_name="chat-bubble",
        ),
        justify=rx.cond(user, "end", "start"),
        width="100%",
    )


def empty_chat() -> rx.Component:
    return rx.flex(
        rx.center(
            rx.icon("message-circle", size=22, color=rx.color("violet", 9)),
            width="44px",
            height="44px",
            border_radius="12px",
            background_color=rx.color("violet", 3),
        ),
        rx.text("Test the draft", size="3", weight="bold"),
        rx.text(
            "Messages go through the router, the queue and the worker like a customer's. "
            "Each reply shows its route and trace.",
            size="2",
            color=rx.color("gray", 10),
            text_align="center",
        ),
        rx.flex(
            *[
                rx.button(
                    text,
                    variant="surface",
                    color_scheme="gray",
                    size="1",
                    radius="full",
                    on_click=ChatTestState.send({"message": text}),
                )
                for text in EXAMPLES
            ],
            wrap="wrap",
            gap="6px",
            justify="center",
            margin_top="4px",
        ),
        direction="column",
        align="center",
        gap="8px",
        padding="40px 24px",
        id="chat-empty",
    )


def chat_panel() -> rx.Component:
    return rx.flex(
        rx.cond(
            ChatTestState.messages.length() > 0,
            # column-reverse keeps the scroll position at the newest message as replies stream in.
            rx.flex(
                rx.flex(
                    rx.foreach(ChatTestState.messages, bubble), direction="column", gap="10px", padding="16px"
                ),
                direction="column-reverse",
                flex="1",
                min_height="0",
                overflow_y="auto",
                id="chat-log",
            ),
            rx.center(empty_chat(), flex="1", min_height="0"),
        ),
        rx.cond(
            ChatTestState.chat_error != "",
            rx.callout(
                ChatTestState.chat_error,
                icon="circle-alert",
                color_scheme="red",
                size="1",
                margin="0 12px 8px",
                id="chat-error",
            ),
        ),
        rx.cond(
            ~ChatTestState.draft_valid,
            rx.callout(
                "The draft has errors; fix them in the editor to test it.",
                icon="triangle-alert",
                color_scheme="amber",
                size="1",
                margin="0 12px 8px",
            ),
        ),
        rx.form(
            rx.flex(
                rx.input(
                    name="message",
                    id="chat-input",
                    placeholder="Write as a customer would…",
                    auto_complete="off",
                    max_length=4000,
                    size="3",
                    flex="1",
                    disabled=ChatTestState.busy,
                ),
                rx.icon_button(
                    rx.cond(ChatTestState.busy, rx.spinner(size="2"), rx.icon("send-horizontal", size=17)),
                    type="submit",
                    size="3",
                    disabled=ChatTestState.busy,
                    id="chat-send",
                    aria_label="Send",
                ),
                gap="8px",
            ),
            on_submit=ChatTestState.send,
            reset_on_submit=True,
            padding="12px",
            border_top=f"1px solid {rx.color('gray', 5)}",
        ),
        direction="column",
        width=CHAT_WIDTH,
        flex_shrink="0",
        background_color=rx.color("gray", 1),
        border_right=f"1px solid {rx.color('gray', 5)}",
        id="chat-panel",
    )


# ---------------------------------------------------------------- canvas


def canvas_area() -> rx.Component:
    return rx.box(
        flow_editor(
            graph=ChatTestState.graph,
            issues={},
            highlight=ChatTestState.highlight,
            read_only=True,
            # Passed through to React Flow's first fit: zoom out further than the editor does, so a
            # wide flow (customer_support's nine subflows) fits between the chat and the trace.
            custom_attrs={"fitViewOptions": {"padding": 0.06, "minZoom": 0.25, "maxZoom": 1}},
        ),
        rx.cond(
            ChatTestState.highlight.length() > 0,
            rx.flex(
                rx.box(
                    width="10px", height="10px", border_radius="3px", background_color=rx.color("green", 9)
                ),
                rx.text(
                    rx.cond(ChatTestState.busy, "Running…", "Path of the selected turn"),
                    size="1",
                    weight="medium",
                ),
                gap="6px",
                align="center",
                position="absolute",
                top="12px",
                left="12px",
                padding="5px 10px",
                border_radius="8px",
                background_color=rx.color("gray", 1),
                box_shadow="0 1px 3px rgba(0,0,0,.12)",
                id="path-legend",
            ),
        ),
        flex="1",
        min_width="0",
        height="100%",
        position="relative",
        background_color=rx.color("gray", 2),
        id="canvas",
    )


# ---------------------------------------------------------------- trace


def section(title: str, *children: rx.Component, **props: object) -> rx.Component:
    return rx.flex(
        rx.text(
            title,
            size="1",
            weight="bold",
            color=rx.color("gray", 10),
            text_transform="uppercase",
            letter_spacing="0.04em",
        ),
        *children,
        direction="column",
        gap="8px",
        padding="14px 16px",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        **props,
    )


def stat(label: str, value: rx.Var[str], tid: str) -> rx.Component:
    return rx.flex(
        rx.text(label, size="1", color=rx.color("gray", 10)),
        rx.text(rx.cond(value != "", value, "-"), size="2", weight="medium", custom_attrs=testid(tid)),
        direction="column",
        gap="1px",
        min_width="0",
    )


def decision_card() -> rx.Component:
    return section(
        "Router decision",
        rx.cond(
            ChatTestState.intent != "",
            rx.flex(
                rx.flex(
                    rx.badge(
                        ChatTestState.intent,
                        size="3",
                        color_scheme="violet",
                        variant="solid",
                        custom_attrs=testid("route-intent"),
                    ),
                    rx.text(ChatTestState.confidence, " confident", size="2", color=rx.color("gray", 11)),
                    gap="10px",
                    align="center",
                ),
                rx.grid(
                    stat("Confidence", ChatTestState.confidence, "route-confidence"),
                    stat("Deciding layer", ChatTestState.layer, "route-layer"),
                    stat("Model tier", ChatTestState.tier, "route-tier"),
                    columns="3",
                    gap="10px",
                ),
                rx.cond(
                    ChatTestState.reason != "",
                    rx.text(ChatTestState.reason, size="1", color=rx.color("gray", 10), line_height="1.4"),
                ),
                direction="column",
                gap="10px",
            ),
            rx.text("No classify node ran in this turn.", size="2", color=rx.color("gray", 10)),
        ),
        id="route-card",
    )


def path_chips() -> rx.Component:
    return section(
        "Path",
        rx.flex(
            rx.foreach(
                ChatTestState.path,
                lambda label, i: rx.fragment(
                    rx.cond(i > 0, rx.icon("chevron-right", size=12, color=rx.color("gray", 9))),
                    rx.code(label, size="1", variant="soft", color_scheme="green"),
                ),
            ),
            wrap="wrap",
            gap="4px",
            align="center",
            id="turn-path",
        ),
    )


def node_row(r: rx.Var[NodeRow]) -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.text(r.node, size="2", weight="medium", font_family=MONO, truncate=True),
            rx.badge(r.type, size="1", variant="soft", color_scheme="gray"),
            rx.spacer(),
            rx.text(r.duration, size="1", color=rx.color("gray", 10), white_space="nowrap"),
            gap="6px",
            align="center",
        ),
        rx.flex(
            rx.text(
                "output ", rx.code(r.output, size="1", variant="ghost"), size="1", color=rx.color("gray", 10)
            ),
            rx.cond(r.tokens != "-", rx.text(r.tokens, " tokens", size="1", color=rx.color("gray", 10))),
            gap="10px",
        ),
        rx.cond(r.details != "", rx.text(r.details, size="1", color=rx.color("gray", 11), line_height="1.4")),
        rx.cond(
            r.errors != "",
            rx.text(
                rx.icon("circle-x", size=12, display="inline", vertical_align="-2px"),
                " ",
                r.errors,
                size="1",
                color=rx.color("red", 11),
            ),
        ),
        direction="column",
        gap="3px",
        padding="9px 11px",
        border_radius="8px",
        border=f"1px solid {rx.color('gray', 4)}",
        border_left=rx.cond(
            r.errors != "", f"3px solid {rx.color('red', 9)}", f"3px solid {rx.color('green', 8)}"
        ),
        background_color=rx.color("gray", 1),
        class_name="trace-row",
        custom_attrs={"data-node": r.node},
    )


def trace_panel() -> rx.Component:
    return rx.flex(
        rx.cond(
            ChatTestState.shown >= 0,
            rx.flex(
                rx.flex(
                    rx.text("Turn ", ChatTestState.shown + 1, size="3", weight="bold"),
                    rx.text(
                        "“",
                        ChatTestState.shown_user,
                        "”",
                        size="2",
                        color=rx.color("gray", 10),
                        truncate=True,
                    ),
                    direction="column",
                    padding="14px 16px 10px",
                    border_bottom=f"1px solid {rx.color('gray', 4)}",
                ),
                decision_card(),
                path_chips(),
                section(
                    "Nodes",
                    rx.foreach(ChatTestState.trace, node_row),
                    rx.flex(
                        rx.text(ChatTestState.tokens, " LLM tokens", size="1", color=rx.color("gray", 10)),
                        rx.text(ChatTestState.cost, size="1", color=rx.color("gray", 10)),
                        justify="between",
                    ),
                    id="trace-nodes",
                ),
                direction="column",
            ),
            rx.flex(
                rx.icon("activity", size=22, color=rx.color("gray", 8)),
                rx.text("The trace of each turn appears here", size="2", weight="medium"),
                rx.text(
                    "Router decision, the path it took and, per node, its output, duration, "
                    "tokens and errors.",
                    size="1",
                    color=rx.color("gray", 10),
                    text_align="center",
                ),
                direction="column",
                align="center",
                gap="6px",
                padding="48px 24px",
            ),
        ),
        direction="column",
        width=TRACE_WIDTH,
        flex_shrink="0",
        overflow_y="auto",
        background_color=rx.color("gray", 1),
        border_left=f"1px solid {rx.color('gray', 5)}",
        id="trace-panel",
    )


# ---------------------------------------------------------------- page


def page() -> rx.Component:
    return workspace(
        toolbar(),
        [chat_panel(), canvas_area(), trace_panel()],
        loaded=ChatTestState.loaded,
        load_error=ChatTestState.load_error,
        error_id="chat-load-error",
    )
