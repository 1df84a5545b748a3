"""Small building blocks shared by the account pages: labelled fields, inline errors, cards."""

from __future__ import annotations

import reflex as rx


def field(
    label: str,
    name: str,
    *,
    type: str = "text",
    placeholder: str = "",
    hint: str = "",
    error: rx.Var[str] | str = "",
    autocomplete: str = "off",
) -> rx.Component:
    """A label, an input and, under it, the service's message for this field (if any)."""
    return rx.flex(
        rx.el.label(rx.text(label, size="2", weight="medium"), html_for=name),
        rx.input(
            name=name,
            id=name,
            type=type,
            placeholder=placeholder,
            size="3",
            width="100%",
            auto_complete=autocomplete,
        ),
        rx.cond(
            error != "",
            rx.text(
                error,
                size="1",
                color=rx.color("red", 11),
                custom_attrs={"data-testid": f"error-{name}", "role": "alert"},
            ),
            rx.text(hint, size="1", color=rx.color("gray", 10)) if hint else rx.fragment(),
        ),
        direction="column",
        gap="6px",
        width="100%",
    )


def error_callout(message: rx.Var[str], test_id: str = "form-error") -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout(
            message,
            icon="circle-alert",
            color_scheme="red",
            variant="surface",
            size="1",
            width="100%",
            custom_attrs={"data-testid": test_id, "role": "alert"},
        ),
    )


def success_callout(message: rx.Var[str], test_id: str = "form-success") -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout(
            message,
            icon="circle-check",
            color_scheme="green",
            variant="surface",
            size="1",
            width="100%",
            custom_attrs={"data-testid": test_id},
        ),
    )


def auth_shell(title: str, subtitle: str, *children: rx.Component) -> rx.Component:
    """The signed-out pages: the brand and one centred card, no sidebar."""
    return rx.center(
        rx.flex(
            rx.flex(
                rx.center(
                    rx.icon("messages-square", size=20, color="white"),
                    width="36px",
                    height="36px",
                    border_radius="9px",
                    background_color=rx.color("accent", 9),
                ),
                rx.text("flowdesk", size="6", weight="bold"),
                align="center",
                gap="10px",
                justify="center",
            ),
            rx.card(
                rx.flex(
                    rx.flex(
                        rx.heading(title, size="6", weight="bold"),
                        rx.text(subtitle, size="2", color=rx.color("gray", 11)),
                        direction="column",
                        gap="4px",
                    ),
                    *children,
                    direction="column",
                    gap="20px",
                ),
                size="4",
                width="100%",
            ),
            direction="column",
            gap="24px",
            width="100%",
            max_width="420px",
        ),
        min_height="100vh",
        padding="24px",
        background_color=rx.color("gray", 2),
    )


def page_header(title: str, subtitle: str) -> rx.Component:
    return rx.flex(
        rx.heading(title, size="7", weight="bold"),
        rx.text(subtitle, size="3", color=rx.color("gray", 11)),
        direction="column",
        gap="6px",
    )


def role_badge(role: rx.Var[str]) -> rx.Component:
    def badge(color: str) -> rx.Component:
        return rx.badge(
            role, color_scheme=color, variant="soft", size="2", custom_attrs={"data-testid": "role-badge"}
        )

    return rx.match(
        role, ("owner", badge("violet")), ("admin", badge("blue")), ("editor", badge("green")), badge("gray")
    )


def admin_only(content: rx.Component) -> rx.Component:
    """Shows ``content`` to owners and admins, a clear refusal to everyone else."""
    from app.state import State  # the state imports nothing from components; no cycle at runtime

    return rx.cond(
        State.auth_checked,
        rx.cond(
            State.is_admin,
            content,
            rx.card(
                rx.flex(
                    rx.icon("shield-alert", size=28, color=rx.color("amber", 10)),
                    rx.heading("You need to be an admin", size="5"),
                    rx.text(
                        "This page is for team owners and admins. Ask one of them to change your role.",
                        size="2",
                        color=rx.color("gray", 11),
                        text_align="center",
                    ),
                    rx.link("Back to workflows", href="/workflows", size="2"),
                    direction="column",
                    align="center",
                    gap="10px",
                    padding="40px",
                ),
                width="100%",
                id="not-admin",
            ),
        ),
        rx.center(rx.spinner(size="3"), padding="48px", width="100%"),
    )


def confirm_dialog(
    title: str,
    description: rx.Component,
    confirm_label: str,
    *,
    open: rx.Var[bool],
    on_cancel: rx.EventHandler,
    on_confirm: rx.EventHandler,
    confirm_id: str,
) -> rx.Component:
    """A destructive action's confirmation: Cancel, or a red confirm button."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(title),
            rx.alert_dialog.description(description),
            rx.flex(
                rx.alert_dialog.cancel(
                    rx.button("Cancel", variant="soft", color_scheme="gray", on_click=on_cancel)
                ),
                rx.alert_dialog.action(
                    rx.button(confirm_label, color_scheme="red", on_click=on_confirm, id=confirm_id)
                ),
                gap="10px",
                justify="end",
                margin_top="16px",
            ),
            max_width="440px",
        ),
        open=open,
    )
