"""The shell every page shares: a header with the product name and the user menu, and a
sidebar of sections.

Pages wrap their content with ``@template(nav=...)``; adding a section to the
sidebar is one ``NavItem`` in ``NAV`` (or ``ADMIN_NAV`` for owners and admins only; hiding the
link is for clarity, the pages and services refuse non-admins themselves).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import reflex as rx

from app.state import State

HEADER_HEIGHT = "56px"
SIDEBAR_WIDTH = "232px"


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    icon: str  # a lucide icon name


NAV: tuple[NavItem, ...] = (
    NavItem("Workflows", "/workflows", "workflow"),
    NavItem("Handoffs", "/handoffs", "headset"),
)
ADMIN_NAV: tuple[NavItem, ...] = (
    NavItem("Members", "/settings/members", "users"),
    NavItem("API keys", "/settings/api-keys", "key-round"),
    NavItem("Plan", "/settings/plan", "gauge"),
    NavItem("Failed turns", "/settings/dead-letters", "triangle-alert"),
)

Page = Callable[[], rx.Component]


def template(nav: str) -> Callable[[Page], Page]:
    """Wrap a page function in the shared layout; ``nav`` is the sidebar href to highlight."""

    def decorator(content: Page) -> Page:
        @functools.wraps(content)
        def page() -> rx.Component:
            return layout(content(), active=nav)

        return page

    return decorator


def layout(content: rx.Component, active: str) -> rx.Component:
    return rx.box(
        header(),
        rx.flex(
            sidebar(active),
            rx.box(
                rx.box(content, max_width="1180px", margin_x="auto", width="100%"),
                flex="1",
                min_width="0",
                padding_x=["16px", "24px", "40px"],
                padding_y="32px",
            ),
            align="stretch",
            width="100%",
            min_height=f"calc(100vh - {HEADER_HEIGHT})",
        ),
        min_height="100vh",
        background_color=rx.color("gray", 2),
    )


def header() -> rx.Component:
    return rx.el.header(
        rx.flex(
            rx.link(
                rx.flex(
                    rx.center(
                        rx.icon("messages-square", size=18, color="white"),
                        width="30px",
                        height="30px",
                        border_radius="8px",
                        background_color=rx.color("accent", 9),
                    ),
                    rx.text("flowdesk", size="5", weight="bold", color=rx.color("gray", 12)),
                    align="center",
                    gap="10px",
                ),
                href="/",
                underline="none",
                id="brand",
            ),
            rx.text(
                "Support agent builder",
                size="2",
                color=rx.color("gray", 10),
                display=["none", "none", "block"],
                padding_left="16px",
            ),
            rx.spacer(),
            rx.cond(State.logged_in, user_menu()),
            align="center",
            height=HEADER_HEIGHT,
            padding_x="20px",
            background_color=rx.color("gray", 1),
            border_bottom=f"1px solid {rx.color('gray', 5)}",
        ),
        position="sticky",
        top="0",
        z_index="10",
    )


def sidebar(active: str) -> rx.Component:
    # The column stretches with the page; its content stays in view while scrolling.
    return rx.box(
        rx.box(
            section_label("Build"),
            rx.el.nav(
                rx.vstack(*(nav_link(item, item.href == active) for item in NAV), spacing="1", width="100%"),
                aria_label="Main",
            ),
            rx.cond(
                State.is_admin,
                rx.box(
                    section_label("Settings"),
                    rx.el.nav(
                        rx.vstack(
                            *(nav_link(item, item.href == active) for item in ADMIN_NAV),
                            spacing="1",
                            width="100%",
                        ),
                        aria_label="Settings",
                    ),
                    padding_top="20px",
                ),
            ),
            position="sticky",
            top=f"calc({HEADER_HEIGHT} + 20px)",
        ),
        width=SIDEBAR_WIDTH,
        flex_shrink="0",
        padding="20px 12px",
        background_color=rx.color("gray", 1),
        border_right=f"1px solid {rx.color('gray', 5)}",
        display=["none", "none", "block"],
    )


def nav_link(item: NavItem, is_active: bool) -> rx.Component:
    return rx.link(
        rx.flex(
            rx.icon(item.icon, size=16),
            rx.text(item.label, size="2", weight="medium"),
            align="center",
            gap="10px",
            padding="8px 12px",
            border_radius="6px",
            color=rx.color("accent", 11) if is_active else rx.color("gray", 11),
            background_color=rx.color("accent", 3) if is_active else "transparent",
            _hover={"background_color": rx.color("accent", 3) if is_active else rx.color("gray", 3)},
        ),
        href=item.href,
        underline="none",
        width="100%",
        custom_attrs={"aria-current": "page"} if is_active else {},
    )


def section_label(text: str) -> rx.Component:
    return rx.text(
        text,
        size="1",
        weight="medium",
        color=rx.color("gray", 9),
        padding_x="12px",
        padding_bottom="6px",
        text_transform="uppercase",
        letter_spacing="0.06em",
    )


def user_menu() -> rx.Component:
    """The signed-in user: email and role, their team, and Log out."""
    return rx.menu.root(
        rx.menu.trigger(
            rx.button(
                rx.avatar(fallback=State.user_email[:1].upper(), size="1", radius="full"),
                rx.text(State.user_email, size="2", max_width="220px", truncate=True),
                rx.icon("chevron-down", size=14),
                variant="ghost",
                color_scheme="gray",
                size="2",
                id="user-menu",
            )
        ),
        rx.menu.content(
            rx.flex(
                rx.text(
                    State.user_email, size="2", weight="medium", custom_attrs={"data-testid": "menu-email"}
                ),
                rx.flex(
                    rx.text(State.team_name, size="1", color=rx.color("gray", 10)),
                    rx.badge(
                        State.user_role, size="1", variant="soft", custom_attrs={"data-testid": "menu-role"}
                    ),
                    gap="8px",
                    align="center",
                ),
                direction="column",
                gap="4px",
                padding="6px 8px",
            ),
            rx.menu.separator(),
            rx.menu.item(
                rx.icon("log-out", size=14),
                "Log out",
                on_click=State.logout,
                id="logout",
            ),
            align="end",
            min_width="220px",
        ),
    )


def workspace(
    toolbar: rx.Component,
    panels: list[rx.Component],
    *,
    loaded: rx.Var[bool],
    load_error: rx.Var[str],
    error_id: str,
) -> rx.Component:
    """A full-screen work page (editor, chat test): app header, toolbar, side-by-side panels;
    a spinner until ``loaded``, a red callout instead when ``load_error`` is set."""
    body = rx.flex(
        toolbar,
        rx.flex(*panels, flex="1", min_height="0", align="stretch"),
        direction="column",
        height=f"calc(100vh - {HEADER_HEIGHT})",
    )
    return rx.box(
        header(),
        rx.cond(
            load_error != "",
            rx.center(
                rx.callout(load_error, icon="circle-alert", color_scheme="red", id=error_id),
                padding="48px",
            ),
            rx.cond(loaded, body, rx.center(rx.spinner(size="3"), padding="64px")),
        ),
        height="100vh",
        overflow="hidden",
        background_color=rx.color("gray", 2),
    )
