"""``/`` and ``/workflows``: the shipped workflows with their size and validity.

The data comes from ``builder.catalog`` (plain Python); this module only shapes it for display.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import reflex as rx

from app.components.layout import template
from app.state import State
from builder import catalog


@dataclasses.dataclass
class WorkflowRow:
    id: str = ""
    name: str = ""
    description: str = ""
    file: str = ""
    nodes: int = 0
    valid: bool = True
    status: str = ""  # "Valid" / "1 error" / "3 errors"
    first_error: str = ""
    warnings: int = 0

    @classmethod
    def from_catalog(cls, row: dict[str, Any]) -> WorkflowRow:
        errors: list[str] = row["errors"]
        n = len(errors)
        return cls(
            id=row["id"],
            name=row["name"],
            description=row["description"],
            file=row["file"],
            nodes=row["nodes"],
            valid=row["valid"],
            status="Valid" if row["valid"] else f"{n} error{'' if n == 1 else 's'}",
            first_error=errors[0] if errors else "",
            warnings=len(row["warnings"]),
        )


class WorkflowsState(State):
    rows: list[WorkflowRow] = []
    source: str = ""
    loaded: bool = False

    @rx.event
    def load(self) -> None:
        """Re-read the directory on every visit: editing a file and reloading shows it."""
        directory = catalog.workflows_dir()
        self.rows = [WorkflowRow.from_catalog(r) for r in catalog.list_workflows(directory)]
        self.source = _display_dir(directory)
        self.loaded = True

    @rx.var
    def total(self) -> int:
        return len(self.rows)

    @rx.var
    def valid_count(self) -> int:
        return sum(1 for r in self.rows if r.valid)

    @rx.var
    def invalid_count(self) -> int:
        return sum(1 for r in self.rows if not r.valid)


def _display_dir(directory: Path) -> str:
    """``workflows/`` inside the checkout, the full path elsewhere."""
    try:
        return f"{directory.resolve().relative_to(catalog.ROOT)}/"
    except ValueError:
        return str(directory)


def stat(label: str, value: rx.Var[int] | int, icon: str, color: str, test_id: str) -> rx.Component:
    return rx.card(
        rx.flex(
            rx.center(
                rx.icon(icon, size=18, color=rx.color(color, 11)),
                width="36px",
                height="36px",
                border_radius="8px",
                background_color=rx.color(color, 3),
            ),
            rx.flex(
                rx.text(label, size="2", color=rx.color("gray", 10)),
                rx.text(value, size="6", weight="bold", custom_attrs={"data-testid": test_id}),
                direction="column",
                gap="0",
            ),
            align="center",
            gap="12px",
        ),
        flex="1",
        min_width="160px",
    )


def status_badge(row: rx.Var[WorkflowRow]) -> rx.Component:
    return rx.cond(
        row.valid,
        rx.badge(
            rx.icon("circle-check", size=14),
            row.status,
            color_scheme="green",
            variant="soft",
            size="2",
            custom_attrs={"data-testid": "wf-status"},
        ),
        rx.badge(
            rx.icon("circle-alert", size=14),
            row.status,
            color_scheme="red",
            variant="soft",
            size="2",
            custom_attrs={"data-testid": "wf-status"},
        ),
    )


def workflow_row(row: rx.Var[WorkflowRow]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.text(row.name, weight="medium", custom_attrs={"data-testid": "wf-name"}),
            rx.code(row.id, variant="ghost", size="1", color_scheme="gray"),
        ),
        rx.table.cell(
            rx.text(row.description, size="2", color=rx.color("gray", 11)),
            rx.cond(
                row.valid,
                rx.fragment(),
                rx.text(
                    row.first_error,
                    size="1",
                    color=rx.color("red", 11),
                    font_family="var(--code-font-family)",
                    margin_top="4px",
                    # Two lines at most; the full line is the tooltip.
                    overflow="hidden",
                    display="-webkit-box",
                    style={"WebkitLineClamp": "2", "WebkitBoxOrient": "vertical"},
                    title=row.first_error,
                    custom_attrs={"data-testid": "wf-error"},
                ),
            ),
        ),
        rx.table.cell(
            rx.text(row.nodes, custom_attrs={"data-testid": "wf-nodes"}),
            text_align="right",
            font_variant_numeric="tabular-nums",
        ),
        rx.table.cell(status_badge(row)),
        custom_attrs={"data-workflow": row.id},
        vertical_align="middle",
    )


def workflows_table() -> rx.Component:
    return rx.card(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Workflow", width="26%"),
                    rx.table.column_header_cell("Description"),
                    rx.table.column_header_cell("Nodes", text_align="right", width="84px"),
                    rx.table.column_header_cell("Status", width="128px"),
                ),
            ),
            rx.table.body(rx.foreach(WorkflowsState.rows, workflow_row)),
            variant="ghost",
            size="2",
            width="100%",
            id="workflows-table",
        ),
        padding="8px 16px",
        width="100%",
    )


def empty_state() -> rx.Component:
    return rx.card(
        rx.flex(
            rx.icon("folder-open", size=28, color=rx.color("gray", 9)),
            rx.text("No workflow files yet", weight="medium"),
            rx.text(
                "Add a ",
                rx.code("*.yaml"),
                " file to ",
                rx.code(WorkflowsState.source),
                " and reload.",
                size="2",
                color=rx.color("gray", 10),
            ),
            direction="column",
            align="center",
            gap="8px",
            padding="40px",
        ),
        width="100%",
        id="workflows-empty",
    )


@template(nav="/workflows")
def page() -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.heading("Workflows", size="7", weight="bold"),
            rx.text(
                "The support flows shipped in ",
                rx.code(WorkflowsState.source, size="2"),
                ", checked against the workflow format and graph rules.",
                size="3",
                color=rx.color("gray", 11),
            ),
            direction="column",
            gap="6px",
        ),
        rx.cond(
            WorkflowsState.loaded,
            rx.flex(
                rx.flex(
                    stat("Workflows", WorkflowsState.total, "workflow", "indigo", "stat-total"),
                    stat("Valid", WorkflowsState.valid_count, "circle-check", "green", "stat-valid"),
                    stat("With errors", WorkflowsState.invalid_count, "circle-alert", "red", "stat-invalid"),
                    gap="16px",
                    wrap="wrap",
                ),
                rx.cond(WorkflowsState.total > 0, workflows_table(), empty_state()),
                direction="column",
                gap="20px",
            ),
            rx.center(rx.spinner(size="3"), padding="48px", width="100%"),
        ),
        direction="column",
        gap="24px",
    )
