"""``/workflows/{id}/versions``: a workflow's history; publish the draft, diff any two, roll back.

Every published version is a numbered row (who, when); the live one is marked. A roll back
publishes an old version's text again as a new version, so the history stays linear and says who
did it. The data comes from ``builder.service`` through ``app.workflow_ops``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import reflex as rx

from app import workflow_ops as ops
from app.components.forms import confirm_dialog, error_callout, success_callout
from app.components.layout import template
from app.pages.workflows import sentence, who
from app.state import State
from core.errors import NotFound, ServiceError

DRAFT = "Draft"


@dataclasses.dataclass
class VersionRow:
    number: int = 0
    label: str = ""  # "v3"
    author: str = ""
    created: str = ""
    published_by: str = ""
    published_at: str = ""
    current: bool = False


@dataclasses.dataclass
class DiffLine:
    kind: str = ""  # "add" / "del" / "hunk" / "head" / "same"
    text: str = ""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def diff_lines(text: str) -> list[DiffLine]:
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        out.append(DiffLine(kind, line))
    return out


def _number(label: str) -> int | None:
    """``"v3"`` -> 3, ``"Draft"`` -> None (the service's name for the draft)."""
    return int(label[1:]) if label.startswith("v") and label[1:].isdigit() else None


def slug_from_path(path: str) -> str:
    """``/workflows/<id>/versions`` -> ``<id>`` (the service answers "not found" for anything odd)."""
    parts = [unquote(p) for p in path.split("/") if p]  # a frontend_path prefix may come first
    return parts[-2] if len(parts) >= 3 and parts[-3:][::2] == ["workflows", "versions"] else ""


class VersionsState(State):
    slug: str = ""
    name: str = ""
    missing: bool = False
    loaded: bool = False
    can_write: bool = False
    published_version: int = 0
    draft_valid: bool = True
    draft_changed: bool = False
    draft_edited: str = ""
    versions: list[VersionRow] = []
    #: "From" is a version (old -> new reads best); "To" may also be the draft.
    from_choices: list[str] = []  # "v3", "v2", ...
    to_choices: list[str] = []  # "Draft", "v3", ...
    diff_from: str = ""
    diff_to: str = DRAFT
    diff: list[DiffLine] = []
    diff_stats: str = ""
    error: str = ""
    notice: str = ""
    confirm_number: int = 0

    def _refresh(self) -> None:
        p = self.principal()
        if p is None:
            return
        try:
            info, hist = ops.details(p, self.slug)
        except NotFound:
            self.missing, self.loaded, self.versions, self.diff = True, True, [], []
            return
        people = ops.people(p)
        self.missing = False
        self.can_write = ops.can_write(p)
        self.name = info["name"]
        self.published_version = info["published_version"] or 0
        self.draft_valid = info["valid"]
        self.draft_changed = info["draft_changed"]
        self.draft_edited = (
            f"{who(info['updated_by'], people)}, {(info['updated_at'] or '')[:16].replace('T', ' ')} UTC"
        )
        self.versions = [
            VersionRow(
                number=h["number"],
                label=f"v{h['number']}",
                author=who(h["author"], people),
                created=_when(h["created_at"]),
                published_by=who(h["published_by"], people),
                published_at=_when(h["published_at"]),
                current=h["current"],
            )
            for h in hist
        ]
        self.from_choices = [v.label for v in self.versions]
        self.to_choices = [DRAFT, *self.from_choices]
        if self.diff_from not in self.from_choices:
            # Default: what is live -> the draft (what publishing would change).
            self.diff_from = f"v{self.published_version}" if self.published_version else ""
        if self.diff_to not in self.to_choices:
            self.diff_to = DRAFT
        self._diff(p)
        self.loaded = True

    def _diff(self, p: Any) -> None:
        a, b = _number(self.diff_from), _number(self.diff_to)
        text = "" if a is None or a == b else ops.diff(p, self.slug, a, b)
        self.diff = diff_lines(text)
        added = sum(1 for d in self.diff if d.kind == "add")
        removed = sum(1 for d in self.diff if d.kind == "del")
        self.diff_stats = f"+{added} −{removed}" if text else ""

    @rx.event
    def load(self) -> None:
        self.slug = slug_from_path(self.router.url.path)
        self.error = self.notice = ""
        self.confirm_number = 0
        self.diff_from = self.diff_to = ""
        self.loaded = False
        self._refresh()

    def _act(self, action: Any) -> bool:
        self.error = self.notice = ""
        p = self.principal()
        if p is None:
            self.error = "Your session has ended; log in again."
            return False
        try:
            action(p)
        except ServiceError as e:
            self.error = sentence(e.message)
            issues = e.details.get("issues") or []
            if issues:
                first = issues[0]
                self.error += (
                    f" First: line {first.get('line') or 1}: {first.get('code')} {first.get('message')}."
                )
            return False
        finally:
            self._refresh()
        return True

    @rx.event
    def set_diff_from(self, value: str) -> None:
        self.diff_from = value
        p = self.principal()
        if p is not None:
            self._diff(p)

    @rx.event
    def set_diff_to(self, value: str) -> None:
        self.diff_to = value
        p = self.principal()
        if p is not None:
            self._diff(p)

    @rx.event
    def compare(self, a: str, b: str) -> None:
        """A row's "Diff" button: that version against the one before it."""
        self.diff_from, self.diff_to = a, b
        p = self.principal()
        if p is not None:
            self._diff(p)

    @rx.event
    def publish(self) -> None:
        done: list[int] = []
        if self._act(lambda p: done.append(ops.publish(p, self.slug).number)):
            self.notice = f"Published the draft as v{done[0]}. New conversations use it now."
            self.diff_from, self.diff_to = f"v{done[0]}", DRAFT
            self._refresh()

    @rx.event
    def ask_rollback(self, number: int) -> None:
        self.confirm_number = number

    @rx.event
    def cancel_rollback(self) -> None:
        self.confirm_number = 0

    @rx.event
    def confirm_rollback(self) -> None:
        number, self.confirm_number = self.confirm_number, 0
        done: list[int] = []
        if number and self._act(lambda p: done.append(ops.rollback(p, self.slug, number).number)):
            self.notice = f"Rolled back to v{number}: published again as v{done[0]}; the draft follows it."

    @rx.event
    def export(self, label: str) -> Any:
        text: list[str] = []
        if not self._act(lambda p: text.append(ops.export(p, self.slug, _number(label)))):
            return None
        suffix = "" if label == DRAFT else f"-{label}"
        return rx.download(data=text[0], filename=f"{self.slug}{suffix}.yaml", mime_type="application/yaml")


# ---------------------------------------------------------------- components


def header() -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.link(
                rx.flex(rx.icon("arrow-left", size=14), "Workflows", align="center", gap="4px"),
                href="/workflows",
                size="2",
                color=rx.color("gray", 11),
                underline="hover",
            ),
            rx.heading(
                rx.cond(VersionsState.name != "", VersionsState.name, VersionsState.slug),
                size="7",
                weight="bold",
                custom_attrs={"data-testid": "versions-title"},
            ),
            rx.flex(
                rx.code(VersionsState.slug, variant="ghost", color_scheme="gray", size="2"),
                rx.text("·", color=rx.color("gray", 9)),
                rx.text("Version history", size="3", color=rx.color("gray", 11)),
                gap="8px",
                align="center",
            ),
            direction="column",
            gap="6px",
        ),
        rx.spacer(),
        rx.flex(
            rx.link(
                rx.button(rx.icon("pencil", size=14), "Open editor", variant="surface", color_scheme="gray"),
                href="/workflows/" + VersionsState.slug + "/edit",
            ),
            rx.button(
                rx.icon("download", size=14),
                "Export draft",
                variant="surface",
                color_scheme="gray",
                on_click=VersionsState.export(DRAFT),
                id="export-draft",
            ),
            gap="10px",
        ),
        align="end",
        gap="16px",
        wrap="wrap",
    )


def draft_card() -> rx.Component:
    status = rx.cond(
        VersionsState.published_version > 0,
        rx.badge(
            rx.icon("circle-dot", size=12),
            "Live: v" + VersionsState.published_version.to_string(),
            color_scheme="indigo",
            variant="soft",
            size="2",
            custom_attrs={"data-testid": "live-version"},
        ),
        rx.badge("Not published yet", color_scheme="gray", variant="soft", size="2"),
    )
    state_text = rx.cond(
        ~VersionsState.draft_valid,
        rx.text(
            "The draft has errors: fix them in the editor before publishing.",
            size="2",
            color=rx.color("red", 11),
        ),
        rx.cond(
            VersionsState.draft_changed,
            rx.text(
                "The draft has changes that are not published.",
                size="2",
                color=rx.color("gray", 11),
                custom_attrs={"data-testid": "draft-state"},
            ),
            rx.text(
                "The draft is the live version.",
                size="2",
                color=rx.color("gray", 11),
                custom_attrs={"data-testid": "draft-state"},
            ),
        ),
    )
    return rx.card(
        rx.flex(
            rx.center(
                rx.icon("file-pen-line", size=18, color=rx.color("accent", 11)),
                width="36px",
                height="36px",
                border_radius="8px",
                background_color=rx.color("accent", 3),
                flex_shrink="0",
            ),
            rx.flex(
                rx.flex(rx.text("Draft", weight="bold"), status, gap="10px", align="center"),
                state_text,
                rx.text("Last edit: ", VersionsState.draft_edited, size="1", color=rx.color("gray", 10)),
                direction="column",
                gap="4px",
            ),
            rx.spacer(),
            rx.cond(
                VersionsState.can_write,
                rx.button(
                    rx.icon("rocket", size=14),
                    "Publish draft",
                    on_click=VersionsState.publish,
                    disabled=~VersionsState.draft_valid | ~VersionsState.draft_changed,
                    id="publish",
                ),
            ),
            align="center",
            gap="14px",
            wrap="wrap",
        ),
        width="100%",
    )


def version_row(v: rx.Var[VersionRow]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.flex(
                rx.text(v.label, weight="bold", font_variant_numeric="tabular-nums"),
                rx.cond(
                    v.current,
                    rx.badge(
                        "Published",
                        color_scheme="green",
                        variant="soft",
                        size="1",
                        custom_attrs={"data-testid": "current-marker"},
                    ),
                ),
                gap="8px",
                align="center",
            )
        ),
        rx.table.cell(rx.text(v.published_by, size="2", custom_attrs={"data-testid": "published-by"})),
        rx.table.cell(rx.text(v.published_at, size="2", color=rx.color("gray", 11), white_space="nowrap")),
        rx.table.cell(rx.text(v.author, size="2", color=rx.color("gray", 11))),
        rx.table.cell(
            rx.flex(
                rx.button(
                    rx.icon("git-compare", size=14),
                    "Diff with draft",
                    variant="soft",
                    color_scheme="gray",
                    size="1",
                    on_click=VersionsState.compare(v.label, DRAFT),
                    custom_attrs={"data-testid": "diff-with-draft"},
                ),
                rx.tooltip(
                    rx.icon_button(
                        rx.icon("download", size=14),
                        variant="ghost",
                        color_scheme="gray",
                        size="1",
                        on_click=VersionsState.export(v.label),
                        custom_attrs={"aria-label": "Export this version", "data-testid": "export-version"},
                    ),
                    content="Export this version",
                ),
                rx.cond(
                    VersionsState.can_write & ~v.current,
                    rx.button(
                        rx.icon("undo-2", size=14),
                        "Roll back",
                        variant="soft",
                        color_scheme="amber",
                        size="1",
                        on_click=VersionsState.ask_rollback(v.number),
                        custom_attrs={"data-testid": "rollback"},
                    ),
                ),
                gap="10px",
                align="center",
                justify="end",
            ),
        ),
        custom_attrs={"data-version": v.number},
        vertical_align="middle",
    )


def versions_table() -> rx.Component:
    return rx.card(
        rx.cond(
            VersionsState.versions.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell("Version", width="150px"),
                        rx.table.column_header_cell("Published by"),
                        rx.table.column_header_cell("Published", width="190px"),
                        rx.table.column_header_cell("Author"),
                        rx.table.column_header_cell("", width="290px"),
                    )
                ),
                rx.table.body(rx.foreach(VersionsState.versions, version_row)),
                variant="ghost",
                size="2",
                width="100%",
                id="versions-table",
            ),
            rx.flex(
                rx.icon("history", size=26, color=rx.color("gray", 9)),
                rx.text("No versions yet", weight="medium"),
                rx.text(
                    "Publishing the draft makes version 1; every publish after it adds one.",
                    size="2",
                    color=rx.color("gray", 10),
                ),
                direction="column",
                align="center",
                gap="6px",
                padding="32px",
                id="versions-empty",
            ),
        ),
        padding="8px 16px",
        width="100%",
    )


def diff_line(d: rx.Var[DiffLine]) -> rx.Component:
    def line(color: str | None, bg: str | None) -> rx.Component:
        return rx.el.div(
            d.text,
            style={
                "color": rx.color(color, 11) if color else "inherit",
                "background": rx.color(bg, 3) if bg else "transparent",
                "whiteSpace": "pre",
                "padding": "0 12px",
                "minHeight": "1.5em",
            },
            custom_attrs={"data-kind": d.kind},
        )

    return rx.match(
        d.kind,
        ("add", line("green", "green")),
        ("del", line("red", "red")),
        ("hunk", line("blue", "blue")),
        ("head", line("gray", None)),
        line(None, None),
    )


def diff_card() -> rx.Component:
    return rx.card(
        rx.flex(
            rx.flex(
                rx.text("Compare", size="3", weight="bold"),
                rx.select(
                    VersionsState.from_choices,
                    value=VersionsState.diff_from,
                    on_change=VersionsState.set_diff_from,
                    size="2",
                    custom_attrs={"aria-label": "From", "data-testid": "diff-from"},
                ),
                rx.icon("arrow-right", size=14, color=rx.color("gray", 10)),
                rx.select(
                    VersionsState.to_choices,
                    value=VersionsState.diff_to,
                    on_change=VersionsState.set_diff_to,
                    size="2",
                    custom_attrs={"aria-label": "To", "data-testid": "diff-to"},
                ),
                rx.spacer(),
                rx.text(
                    VersionsState.diff_stats,
                    size="2",
                    font_family="var(--code-font-family)",
                    color=rx.color("gray", 11),
                    custom_attrs={"data-testid": "diff-stats"},
                ),
                gap="10px",
                align="center",
                wrap="wrap",
            ),
            rx.cond(
                VersionsState.diff.length() > 0,
                rx.box(
                    rx.foreach(VersionsState.diff, diff_line),
                    font_family="var(--code-font-family)",
                    font_size="12px",
                    line_height="1.5",
                    padding_y="8px",
                    border=f"1px solid {rx.color('gray', 5)}",
                    border_radius="6px",
                    background_color=rx.color("gray", 1),
                    overflow_x="auto",
                    max_height="560px",
                    overflow_y="auto",
                    id="diff",
                ),
                rx.text(
                    "No differences between these two.",
                    size="2",
                    color=rx.color("gray", 10),
                    padding="12px 0",
                    id="diff-empty",
                ),
            ),
            direction="column",
            gap="14px",
        ),
        width="100%",
    )


def rollback_dialog() -> rx.Component:
    return confirm_dialog(
        "Roll back",
        rx.text(
            "Publish ",
            rx.text.strong("v" + VersionsState.confirm_number.to_string()),
            " again as a new version? New conversations use it at once, and the draft is replaced "
            "by its text (export the draft first to keep unpublished changes).",
        ),
        "Roll back",
        open=VersionsState.confirm_number > 0,
        on_cancel=VersionsState.cancel_rollback,
        on_confirm=VersionsState.confirm_rollback,
        confirm_id="confirm-rollback",
    )


def not_found() -> rx.Component:
    return rx.card(
        rx.flex(
            rx.icon("search-x", size=28, color=rx.color("gray", 9)),
            rx.heading("Workflow not found", size="5"),
            rx.text(
                "There is no workflow “",
                VersionsState.slug,
                "” in your team.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.link("Back to workflows", href="/workflows", size="2"),
            direction="column",
            align="center",
            gap="10px",
            padding="40px",
        ),
        width="100%",
        id="workflow-missing",
    )


@template(nav="/workflows")
def page() -> rx.Component:
    return rx.cond(
        VersionsState.loaded,
        rx.cond(
            VersionsState.missing,
            not_found(),
            rx.flex(
                header(),
                success_callout(VersionsState.notice, "versions-notice"),
                error_callout(VersionsState.error, "versions-error"),
                draft_card(),
                versions_table(),
                rx.cond(VersionsState.versions.length() > 0, diff_card()),
                rollback_dialog(),
                direction="column",
                gap="20px",
                id="versions-page",
            ),
        ),
        rx.center(rx.spinner(size="3"), padding="48px", width="100%"),
    )
