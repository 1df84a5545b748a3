"""The shell every page shares: a header with the product name and a sidebar of sections.

Pages wrap their content with ``@template(nav=...)``; adding a section to the
sidebar is one ``NavItem`` in ``NAV``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import reflex as rx

HEADER_HEIGHT = "56px"
SIDEBAR_WIDTH = "232px"


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    icon: str  # a lucide icon name


NAV: tuple[NavItem, ...] = (NavItem("Workflows", "/workflows", "workflow"),)

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
            rx.spacer(),
            rx.text("Support agent builder", size="2", color=rx.color("gray", 10)),
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
            rx.text(
                "Build",
                size="1",
                weight="medium",
                color=rx.color("gray", 9),
                padding_x="12px",
                padding_bottom="6px",
                text_transform="uppercase",
                letter_spacing="0.06em",
            ),
            rx.el.nav(
                rx.vstack(*(nav_link(item, item.href == active) for item in NAV), spacing="1", width="100%"),
                aria_label="Main",
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
