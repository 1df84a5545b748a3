"""``/workflows/[id]/edit``: the canvas editor (palette, React Flow canvas, node form, issues, YAML).

Layout only; the state is ``app.pages.editor_state.EditorState`` and the edits are plain
Python in ``builder.canvas`` / ``builder.editor``.
"""

from __future__ import annotations

import reflex as rx

from app.components.flow import flow_editor
from app.components.layout import workspace
from app.pages.editor_state import EditorState, Field, IssueRow, PaletteItem
from nodes import NODE_TYPES

TOOLBAR_HEIGHT = "52px"
PALETTE_WIDTH = "236px"
PANEL_WIDTH = "380px"
YAML_PANEL_WIDTH = "560px"
GROUP_COLORS = {"Flow": "indigo", "Messages": "green", "AI": "purple", "Data": "amber", "Tools": "blue"}
MONO = "var(--code-font-family)"


def testid(name: str) -> dict[str, str]:
    return {"data-testid": name}


# ---------------------------------------------------------------- toolbar


def toolbar() -> rx.Component:
    return rx.flex(
        rx.link(
            rx.icon_button(rx.icon("arrow-left", size=16), variant="ghost", color_scheme="gray", size="2"),
            href="/workflows",
            aria_label="Back to workflows",
        ),
        rx.flex(
            rx.text(EditorState.wf_name, size="3", weight="bold", truncate=True, id="wf-title"),
            rx.flex(
                rx.code(EditorState.slug, size="1", variant="ghost", color_scheme="gray"),
                rx.cond(
                    EditorState.published_version > 0,
                    rx.badge(
                        "published v",
                        EditorState.published_version,
                        color_scheme="green",
                        size="1",
                        variant="soft",
                        id="wf-status",
                    ),
                    rx.badge("draft", color_scheme="gray", size="1", variant="soft", id="wf-status"),
                ),
                rx.cond(
                    (EditorState.published_version > 0) & EditorState.draft_changed,
                    rx.tooltip(
                        rx.text(
                            "unpublished changes",
                            size="1",
                            color=rx.color("amber", 11),
                            custom_attrs=testid("draft-changed"),
                        ),
                        content="The draft differs from the live version: publish to make it live",
                    ),
                ),
                gap="6px",
                align="center",
            ),
            direction="column",
            gap="0",
            min_width="0",
        ),
        rx.spacer(),
        rx.cond(
            EditorState.save_error != "",
            rx.tooltip(
                rx.badge(
                    rx.icon("triangle-alert", size=12),
                    "Not saved",
                    color_scheme="red",
                    variant="soft",
                    custom_attrs=testid("save-error"),
                ),
                content=EditorState.save_error,
            ),
            rx.text(
                rx.icon("check", size=14, display="inline", vertical_align="-2px", margin_right="4px"),
                EditorState.status,
                size="1",
                color=rx.color("gray", 10),
                id="save-status",
                custom_attrs={"data-saves": EditorState.saves},
            ),
        ),
        issue_summary(),
        rx.separator(orientation="vertical", size="2"),
        rx.tooltip(
            rx.icon_button(
                rx.icon("undo-2", size=16),
                on_click=EditorState.undo,
                disabled=~EditorState.can_undo,
                variant="soft",
                color_scheme="gray",
                id="undo",
            ),
            content="Undo (Ctrl+Z)",
        ),
        rx.tooltip(
            rx.icon_button(
                rx.icon("redo-2", size=16),
                on_click=EditorState.redo,
                disabled=~EditorState.can_redo,
                variant="soft",
                color_scheme="gray",
                id="redo",
            ),
            content="Redo (Ctrl+Shift+Z)",
        ),
        rx.tooltip(
            rx.button(
                rx.icon("layout-grid", size=15),
                "Auto-layout",
                on_click=EditorState.auto_layout,
                variant="soft",
                color_scheme="gray",
                disabled=EditorState.read_only,
                id="auto-layout",
            ),
            content="Lay every node out again, top to bottom",
        ),
        rx.link(
            rx.button(rx.icon("history", size=15), "Versions", variant="soft", color_scheme="gray"),
            href="/workflows/" + EditorState.slug + "/versions",
            id="versions-link",
        ),
        rx.link(
            rx.button(rx.icon("message-circle", size=15), "Test", variant="soft", color_scheme="gray"),
            href="/workflows/" + EditorState.slug + "/test",
            id="test-link",
        ),
        rx.button(
            rx.icon("rocket", size=15),
            "Publish",
            on_click=EditorState.publish,
            disabled=EditorState.read_only,
            id="publish",
        ),
        align="center",
        gap="10px",
        height=TOOLBAR_HEIGHT,
        padding_x="14px",
        background_color=rx.color("gray", 1),
        border_bottom=f"1px solid {rx.color('gray', 5)}",
    )


def issue_summary() -> rx.Component:
    return rx.button(
        rx.cond(
            EditorState.error_count > 0,
            rx.flex(
                rx.icon("circle-alert", size=14),
                EditorState.error_count,
                rx.cond(EditorState.error_count == 1, " error", " errors"),
                align="center",
                gap="4px",
            ),
            rx.flex(rx.icon("circle-check", size=14), "Valid", align="center", gap="4px"),
        ),
        rx.cond(
            EditorState.warning_count > 0,
            rx.text(
                "· ",
                EditorState.warning_count,
                rx.cond(EditorState.warning_count == 1, " warning", " warnings"),
            ),
        ),
        on_click=EditorState.set_tab("issues"),
        variant="soft",
        size="1",
        color_scheme=rx.cond(EditorState.error_count > 0, "red", "green"),
        id="issue-summary",
    )


# ---------------------------------------------------------------- palette


def type_icon(node_type: rx.Var[str], group: rx.Var[str], size: int = 14) -> rx.Component:
    """The node type's lucide icon on its group's colour (icons are static per type)."""

    def square(icon: str, group_name: str) -> rx.Component:
        color = GROUP_COLORS.get(group_name, "gray")
        return rx.center(
            rx.icon(icon, size=size, color="white"),
            width="26px",
            height="26px",
            border_radius="7px",
            background_color=rx.color(color, 9),
            flex_shrink="0",
        )

    return rx.match(
        node_type,
        *((t, square(spec.icon, spec.group)) for t, spec in NODE_TYPES.items()),
        square("box", ""),
    )


def palette_item(item: rx.Var[PaletteItem]) -> rx.Component:
    return rx.flex(
        type_icon(item.type, item.group),
        rx.flex(
            rx.text(item.title, size="2", weight="medium", line_height="1.25"),
            rx.text(
                item.description,
                size="1",
                color=rx.color("gray", 10),
                line_height="1.3",
                overflow="hidden",
                display="-webkit-box",
                style={"WebkitLineClamp": "2", "WebkitBoxOrient": "vertical"},
            ),
            direction="column",
            gap="1px",
            min_width="0",
        ),
        gap="9px",
        align="start",
        padding="7px 8px",
        border_radius="8px",
        border=f"1px solid {rx.color('gray', 4)}",
        background_color=rx.color("gray", 1),
        cursor="grab",
        _hover={"border_color": rx.color("accent", 7), "background_color": rx.color("accent", 2)},
        on_click=EditorState.add_from_palette(item.type),
        title="Drag onto the canvas (or click to add)",
        custom_attrs={"draggable": "true", "data-node-type": item.type, "data-testid": "palette-item"},
    )


def palette() -> rx.Component:
    return rx.flex(
        rx.input(
            rx.input.slot(rx.icon("search", size=14)),
            placeholder="Search nodes…",
            value=EditorState.palette_query,
            on_change=EditorState.set_palette_query,
            size="2",
            id="palette-search",
        ),
        rx.text("Drag a node onto the canvas", size="1", color=rx.color("gray", 10)),
        rx.flex(
            rx.foreach(
                EditorState.palette,
                lambda item: rx.fragment(
                    rx.cond(
                        item.first,
                        rx.text(
                            item.group,
                            size="1",
                            weight="bold",
                            color=rx.color("gray", 9),
                            text_transform="uppercase",
                            letter_spacing="0.06em",
                            padding_top="8px",
                        ),
                    ),
                    palette_item(item),
                ),
            ),
            direction="column",
            gap="6px",
            overflow_y="auto",
            flex="1",
            padding_bottom="12px",
            id="palette",
        ),
        direction="column",
        gap="8px",
        width=PALETTE_WIDTH,
        flex_shrink="0",
        padding="12px",
        background_color=rx.color("gray", 1),
        border_right=f"1px solid {rx.color('gray', 5)}",
        min_height="0",
    )


# ---------------------------------------------------------------- node form


def variable_chips(f: rx.Var[Field]) -> rx.Component:
    return rx.flex(
        rx.text("Insert:", size="1", color=rx.color("gray", 10)),
        rx.foreach(
            EditorState.suggestions,
            lambda v: rx.badge(
                v,
                variant="surface",
                size="1",
                cursor="pointer",
                on_click=EditorState.insert_variable(f.name, v),
                custom_attrs=testid("var-chip"),
            ),
        ),
        wrap="wrap",
        gap="4px",
        align="center",
    )


def field_input(f: rx.Var[Field]) -> rx.Component:
    field_id = "field-" + f.name
    area = {"font_family": MONO, "font_size": "12px"}
    return rx.match(
        f.kind,
        (
            "template",
            rx.flex(
                rx.text_area(
                    name=f.name, id=field_id, default_value=f.value, rows="4", resize="vertical", **area
                ),
                variable_chips(f),
                direction="column",
                gap="6px",
            ),
        ),
        ("number", rx.input(name=f.name, id=field_id, default_value=f.value, type="number", step="any")),
        ("integer", rx.input(name=f.name, id=field_id, default_value=f.value, type="number", step="1")),
        (
            "bool",
            rx.flex(
                rx.checkbox(name=f.name, id=field_id, default_checked=f.value == "true"),
                rx.text("enabled", size="2"),
                gap="6px",
                align="center",
            ),
        ),
        ("select", rx.select(f.options, name=f.name, default_value=f.value, id=field_id)),
        (
            "list",
            rx.text_area(
                name=f.name, id=field_id, default_value=f.value, rows="3", placeholder=f.placeholder, **area
            ),
        ),
        (
            "keyvalue",
            rx.text_area(
                name=f.name, id=field_id, default_value=f.value, rows="3", placeholder=f.placeholder, **area
            ),
        ),
        (
            "yaml",
            rx.text_area(
                name=f.name, id=field_id, default_value=f.value, rows="8", placeholder=f.placeholder, **area
            ),
        ),
        rx.input(name=f.name, id=field_id, default_value=f.value),
    )


KIND_HINTS = {"list": "one per line", "keyvalue": "name: value per line", "yaml": "YAML"}


def form_field(f: rx.Var[Field]) -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.text(f.label, size="2", weight="medium", as_="label", html_for="field-" + f.name),
            rx.cond(f.required, rx.text("*", color=rx.color("red", 10), size="2")),
            rx.spacer(),
            rx.match(
                f.kind,
                *((k, rx.text(v, size="1", color=rx.color("gray", 9))) for k, v in KIND_HINTS.items()),
                rx.fragment(),
            ),
            align="center",
            gap="4px",
        ),
        field_input(f),
        rx.cond(f.description != "", rx.text(f.description, size="1", color=rx.color("gray", 10))),
        rx.cond(
            f.error != "",
            rx.text(f.error, size="1", color=rx.color("red", 11), custom_attrs=testid("field-error")),
        ),
        direction="column",
        gap="4px",
        custom_attrs={"data-field": f.name},
    )


def node_issue(row: rx.Var[IssueRow]) -> rx.Component:
    return rx.cond(
        row.node_id == EditorState.selected[0],
        rx.cond(
            row.severity == "error",
            rx.callout(
                row.message,
                icon="circle-alert",
                color_scheme="red",
                size="1",
                custom_attrs=testid("node-issue"),
            ),
            rx.callout(
                row.message,
                icon="triangle-alert",
                color_scheme="amber",
                size="1",
                custom_attrs=testid("node-issue"),
            ),
        ),
    )


def node_panel() -> rx.Component:
    return rx.cond(
        EditorState.selected.length() == 1,
        rx.flex(
            rx.flex(
                rx.flex(
                    rx.heading(EditorState.selected_title, size="3"),
                    rx.code(EditorState.selected_kind, size="1", variant="soft"),
                    gap="8px",
                    align="center",
                ),
                rx.text(EditorState.selected_description, size="1", color=rx.color("gray", 10)),
                direction="column",
                gap="4px",
            ),
            rx.foreach(EditorState.issues, node_issue),
            rx.form(
                rx.flex(
                    rx.foreach(EditorState.form_fields, form_field),
                    rx.flex(
                        rx.button(
                            rx.icon("check", size=15),
                            "Apply",
                            type="submit",
                            disabled=EditorState.read_only,
                            id="form-save",
                        ),
                        rx.button(
                            rx.icon("copy", size=15),
                            "Duplicate",
                            type="button",
                            variant="soft",
                            color_scheme="gray",
                            on_click=EditorState.duplicate_selected,
                            disabled=EditorState.read_only,
                            id="node-duplicate",
                        ),
                        rx.spacer(),
                        rx.button(
                            rx.icon("trash-2", size=15),
                            "Delete",
                            type="button",
                            variant="soft",
                            color_scheme="red",
                            on_click=EditorState.delete_selected,
                            disabled=EditorState.read_only,
                            id="node-delete",
                        ),
                        gap="8px",
                        padding_top="4px",
                    ),
                    direction="column",
                    gap="14px",
                ),
                on_submit=EditorState.save_form,
                key=EditorState.form_key,
                id="node-form",
            ),
            direction="column",
            gap="14px",
        ),
        rx.cond(
            EditorState.selected.length() > 1,
            rx.flex(
                rx.text(EditorState.selected.length(), " nodes selected", size="2", weight="medium"),
                rx.text(
                    "Ctrl+C / Ctrl+V copies them, Delete removes them.", size="1", color=rx.color("gray", 10)
                ),
                rx.flex(
                    rx.button("Duplicate", variant="soft", on_click=EditorState.duplicate_selected),
                    rx.button(
                        "Delete", variant="soft", color_scheme="red", on_click=EditorState.delete_selected
                    ),
                    gap="8px",
                ),
                direction="column",
                gap="10px",
            ),
            empty_hint(),
        ),
    )


def empty_hint() -> rx.Component:
    return rx.flex(
        rx.icon("mouse-pointer-click", size=22, color=rx.color("gray", 8)),
        rx.text("Select a node to edit it", size="2", weight="medium"),
        rx.text(
            "Drag nodes from the palette, connect an output (bottom) to the next node's input (top). "
            "Shift-drag selects several; Ctrl+Z / Ctrl+Shift+Z undo and redo.",
            size="1",
            color=rx.color("gray", 10),
            text_align="center",
        ),
        direction="column",
        align="center",
        gap="8px",
        padding="40px 16px",
    )


# ---------------------------------------------------------------- issues and YAML


def issue_row(row: rx.Var[IssueRow]) -> rx.Component:
    return rx.flex(
        rx.box(
            rx.cond(
                row.severity == "error",
                rx.icon("circle-alert", size=15, color=rx.color("red", 10)),
                rx.icon("triangle-alert", size=15, color=rx.color("amber", 10)),
            ),
            flex_shrink="0",
            padding_top="2px",
        ),
        rx.flex(
            rx.text(row.message, size="2"),
            rx.flex(
                rx.code(row.code, size="1", variant="ghost", color_scheme="gray"),
                rx.cond(row.line > 0, rx.text("line ", row.line, size="1", color=rx.color("gray", 10))),
                rx.cond(
                    row.node_id != "",
                    rx.link(
                        "show node", size="1", on_click=EditorState.focus_node(row.node_id), cursor="pointer"
                    ),
                ),
                gap="8px",
                align="center",
            ),
            rx.cond(row.hint != "", rx.text("Fix: ", row.hint, size="1", color=rx.color("gray", 10))),
            direction="column",
            gap="2px",
        ),
        gap="8px",
        padding="8px 0",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        custom_attrs={"data-testid": "issue", "data-severity": row.severity, "data-node": row.node_id},
    )


def issues_panel() -> rx.Component:
    return rx.flex(
        rx.cond(
            EditorState.publish_message != "",
            rx.cond(
                EditorState.publish_ok,
                rx.callout(
                    EditorState.publish_message,
                    icon="circle-check",
                    color_scheme="green",
                    size="1",
                    id="publish-message",
                ),
                rx.callout(
                    EditorState.publish_message,
                    icon="ban",
                    color_scheme="red",
                    size="1",
                    id="publish-message",
                ),
            ),
        ),
        rx.cond(
            EditorState.issues.length() == 0,
            rx.flex(
                rx.icon("circle-check", size=22, color=rx.color("green", 9)),
                rx.text("No issues: this workflow can be published.", size="2", text_align="center"),
                direction="column",
                align="center",
                gap="8px",
                padding="32px",
            ),
            rx.box(rx.foreach(EditorState.issues, issue_row), id="issue-list"),
        ),
        direction="column",
        gap="10px",
    )


def yaml_error(row: rx.Var[IssueRow]) -> rx.Component:
    return rx.text(
        rx.cond(row.line > 0, rx.text.strong("line ", row.line, ": ")),
        row.code,
        " ",
        row.message,
        size="1",
        font_family=MONO,
        custom_attrs=testid("yaml-error"),
    )


def yaml_panel() -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.text(
                "Canonical YAML of the draft. Edit and apply (or leave the box) to update the canvas.",
                size="1",
                color=rx.color("gray", 10),
            ),
            rx.spacer(),
            rx.button(
                rx.icon("check", size=14),
                "Apply",
                size="1",
                on_click=rx.call_script(
                    "document.getElementById('yaml-editor').value",
                    callback=EditorState.apply_yaml,
                ),
                disabled=EditorState.read_only,
                id="yaml-apply",
            ),
            align="center",
            gap="8px",
        ),
        rx.cond(
            EditorState.yaml_errors.length() > 0,
            rx.callout(
                rx.flex(rx.foreach(EditorState.yaml_errors, yaml_error), direction="column", gap="2px"),
                icon="circle-alert",
                color_scheme="red",
                size="1",
                id="yaml-errors",
            ),
        ),
        rx.text_area(
            default_value=EditorState.yaml_text,
            key=EditorState.yaml_key,
            on_blur=EditorState.apply_yaml,
            id="yaml-editor",
            spell_check=False,
            font_family=MONO,
            font_size="12px",
            flex="1",
            min_height="0",
            style={"height": "100%", "& textarea": {"white-space": "pre", "overflow": "auto"}},
            read_only=EditorState.read_only,
        ),
        direction="column",
        gap="8px",
        height="100%",
    )


def tab_button(value: str, label: rx.Component | str, icon: str) -> rx.Component:
    active = EditorState.tab == value
    return rx.button(
        rx.icon(icon, size=14),
        label,
        variant=rx.cond(active, "solid", "ghost"),
        color_scheme=rx.cond(active, "indigo", "gray"),
        size="1",
        on_click=EditorState.set_tab(value),
        id=f"tab-{value}",
    )


def side_panel() -> rx.Component:
    return rx.flex(
        rx.flex(
            tab_button("node", "Node", "square-pen"),
            tab_button(
                "issues",
                rx.fragment(
                    "Issues ",
                    rx.cond(
                        EditorState.issues.length() > 0, rx.text.span("(", EditorState.issues.length(), ")")
                    ),
                ),
                "list-checks",
            ),
            tab_button("yaml", "YAML", "file-code"),
            gap="6px",
            padding="10px 12px",
            border_bottom=f"1px solid {rx.color('gray', 4)}",
        ),
        rx.box(
            rx.match(
                EditorState.tab,
                ("issues", issues_panel()),
                ("yaml", yaml_panel()),
                node_panel(),
            ),
            padding="14px",
            overflow_y=rx.cond(EditorState.tab == "yaml", "hidden", "auto"),
            flex="1",
            min_height="0",
        ),
        direction="column",
        width=rx.cond(EditorState.tab == "yaml", YAML_PANEL_WIDTH, PANEL_WIDTH),
        flex_shrink="0",
        background_color=rx.color("gray", 1),
        border_left=f"1px solid {rx.color('gray', 5)}",
        min_height="0",
        id="side-panel",
    )


# ---------------------------------------------------------------- page


def canvas_area() -> rx.Component:
    return rx.box(
        flow_editor(
            graph=EditorState.graph,
            issues=EditorState.node_issues,
            highlight=EditorState.highlight,
            read_only=EditorState.read_only,
            on_graph_change=EditorState.graph_changed,
            on_select=EditorState.select_nodes,
            on_add_node=EditorState.add_node,
            on_undo=EditorState.undo,
            on_redo=EditorState.redo,
        ),
        flex="1",
        min_width="0",
        height="100%",
        background_color=rx.color("gray", 2),
        id="canvas",
    )


def page() -> rx.Component:
    return workspace(
        toolbar(),
        [palette(), canvas_area(), side_panel()],
        loaded=EditorState.loaded,
        load_error=EditorState.load_error,
        error_id="editor-error",
    )
