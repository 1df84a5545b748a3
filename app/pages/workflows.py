"""``/`` and ``/workflows``: the team's stored workflows; create, duplicate, delete, import, export.

The list is the signed-in tenant's workflows (``builder.service`` through ``app.workflow_ops``);
the shipped ``workflows/*.yaml`` files (``builder.catalog``) are offered as templates. This module
only shapes the answers for display and keeps the dialogs' state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from app import workflow_ops as ops
from app.components.forms import confirm_dialog, error_callout, success_callout
from app.components.layout import template
from app.state import State, form_text
from builder import catalog
from builder import service as wfs
from core.errors import ServiceError

UPLOAD_ID = "yaml-upload"
#: The browser refuses bigger files before sending them; the service checks the size again.
UPLOAD_MAX_BYTES = wfs.MAX_YAML_BYTES


@dataclasses.dataclass
class WorkflowRow:
    id: str = ""
    name: str = ""
    description: str = ""
    nodes: int = 0
    published: bool = False
    version: int = 0
    draft_changed: bool = False
    valid: bool = True
    validity: str = ""  # "Valid" / "1 error" / "3 errors"
    first_issue: str = ""
    edited_by: str = ""
    edited_at: str = ""


@dataclasses.dataclass
class TemplateRow:
    id: str = ""
    name: str = ""
    description: str = ""
    nodes: int = 0
    valid: bool = True
    status: str = ""


@dataclasses.dataclass
class IssueRow:
    where: str = ""  # "line 7, col 3"
    code: str = ""
    message: str = ""


def sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def when(iso: str | None) -> str:
    """``2026-11-25T07:10:30+00:00`` -> ``2026-11-25 07:10 UTC``."""
    return f"{iso[:10]} {iso[11:16]} UTC" if iso else ""


def who(author: str | None, people: dict[str, str]) -> str:
    if not author:
        return "system"
    return people.get(author) or ("API key" if author.startswith("apikey:") else author[:12])


def issue_rows(issues: list[dict[str, Any]]) -> list[IssueRow]:
    return [
        IssueRow(
            where=f"line {i.get('line') or 1}, col {i.get('col') or 1}",
            code=str(i.get("code", "")),
            message=str(i.get("message", "")) + (f" (fix: {i['hint']})" if i.get("hint") else ""),
        )
        for i in issues
    ]


class WorkflowsState(State):
    rows: list[WorkflowRow] = []
    templates: list[TemplateRow] = []
    loaded: bool = False
    can_write: bool = False
    error: str = ""
    notice: str = ""
    # New workflow dialog
    create_open: bool = False
    create_error: str = ""
    # Import dialog: the pasted text stays until a successful import, so nothing typed is lost.
    import_open: bool = False
    import_text: str = ""
    import_error: str = ""
    import_issues: list[IssueRow] = []
    # Delete confirmation
    confirm_id: str = ""
    confirm_name: str = ""

    @rx.var
    def published_count(self) -> int:
        return sum(1 for r in self.rows if r.published)

    @rx.var
    def invalid_count(self) -> int:
        return sum(1 for r in self.rows if not r.valid)

    def _refresh(self) -> None:
        p = self.principal()
        if p is None:
            self.rows, self.loaded = [], True
            return
        people = ops.people(p)
        self.can_write = ops.can_write(p)
        rows = []
        for r in ops.overview(p):
            rows.append(
                WorkflowRow(
                    id=r["id"],
                    name=r["name"],
                    description=r["description"],
                    nodes=r["nodes"],
                    published=r["status"] == "published",
                    version=r["published_version"] or 0,
                    draft_changed=r["draft_changed"],
                    valid=r["errors"] == 0,
                    validity="Valid" if r["errors"] == 0 else plural(r["errors"], "error"),
                    first_issue=r["first_issue"],
                    edited_by=who(r["updated_by"], people),
                    edited_at=when(r["updated_at"]),
                )
            )
        self.rows = rows
        self.loaded = True

    @rx.event
    def load(self) -> None:
        self.error = self.notice = ""
        self.create_open = self.import_open = False
        self.confirm_id = ""
        self.templates = [
            TemplateRow(
                id=t["id"],
                name=t["name"],
                description=t["description"],
                nodes=t["nodes"],
                valid=t["valid"],
                status="Valid" if t["valid"] else plural(len(t["errors"]), "error"),
            )
            for t in catalog.list_workflows()
        ]
        self._refresh()

    def _act(self, action: Any) -> bool:
        """Run ``action(principal)``; a refusal becomes the page's error message."""
        self.error = self.notice = ""
        p = self.principal()
        if p is None:
            self.error = "Your session has ended; log in again."
            return False
        try:
            action(p)
        except ServiceError as e:
            self.error = sentence(e.message)
            return False
        finally:
            self._refresh()
        return True

    # ------------------------------------------------------------ create

    @rx.event
    def open_create(self) -> None:
        self.create_open, self.create_error = True, ""

    @rx.event
    def set_create_open(self, value: bool) -> None:
        self.create_open = value

    @rx.event
    def create_blank(self, form: dict[str, Any]) -> None:
        created: list[str] = []
        if self._act(lambda p: created.append(ops.create_blank(p, form_text(form, "name")).row.name)):
            self.create_open = False
            self.notice = f"Created “{created[0]}”. Open it in the editor to add nodes."
        else:
            self.create_error, self.error = self.error, ""

    @rx.event
    def create_from_template(self, template_id: str) -> None:
        created: list[tuple[str, str]] = []

        def run(p: Any) -> None:
            d = ops.create_from_template(p, template_id)
            created.append((d.row.name, d.row.slug))

        if self._act(run):
            self.create_open = False
            name, slug = created[0]
            self.notice = f"Created “{name}” ({slug}) from the template."
        else:
            self.create_error, self.error = self.error, ""

    # ------------------------------------------------------------ duplicate, delete, export

    @rx.event
    def duplicate(self, slug: str) -> None:
        made: list[str] = []
        if self._act(lambda p: made.append(ops.duplicate(p, slug).row.slug)):
            self.notice = f"Duplicated {slug} as {made[0]}."

    @rx.event
    def ask_delete(self, slug: str, name: str) -> None:
        self.confirm_id, self.confirm_name = slug, name

    @rx.event
    def cancel_delete(self) -> None:
        self.confirm_id = self.confirm_name = ""

    @rx.event
    def confirm_delete(self) -> None:
        slug, name = self.confirm_id, self.confirm_name
        self.confirm_id = self.confirm_name = ""
        if slug and self._act(lambda p: ops.delete(p, slug)):
            self.notice = f"Deleted “{name}” and its version history."

    @rx.event
    def export(self, slug: str) -> Any:
        text: list[str] = []
        if not self._act(lambda p: text.append(ops.export(p, slug))):
            return None
        return rx.download(data=text[0], filename=f"{slug}.yaml", mime_type="application/yaml")

    # ------------------------------------------------------------ import

    @rx.event
    def open_import(self) -> None:
        self.import_open, self.import_error, self.import_issues = True, "", []

    @rx.event
    def set_import_open(self, value: bool) -> None:
        self.import_open = value

    @rx.event
    def set_import_text(self, value: str) -> None:
        self.import_text = value

    def _import(self, text: str | bytes, source: str) -> None:
        self.import_error, self.import_issues = "", []
        drafts: list[wfs.Draft] = []
        p = self.principal()
        if p is None:
            self.import_error = "Your session has ended; log in again."
            return
        try:
            drafts.append(ops.import_yaml(p, text))
        except ServiceError as e:
            self.import_error = f"{source} was not imported: {e.message}"
            self.import_issues = issue_rows(e.details.get("issues") or [])
            return
        finally:
            self._refresh()
        d = drafts[0]
        errors = [i.to_dict() for i in d.issues if i.severity == "error"]
        verb = "Imported" if d.created else "Updated in place"
        self.notice = f"{verb} “{d.row.name}” ({d.row.slug})."
        if errors:
            self.notice += (
                f" It was saved as a draft with {plural(len(errors), 'error')} to fix before publishing."
            )
        self.import_text, self.import_open = "", False

    @rx.event
    def import_pasted(self, _form: dict[str, Any]) -> None:
        if not self.import_text.strip():
            self.import_error, self.import_issues = "Paste a workflow's YAML, or choose a file.", []
            return
        self._import(self.import_text, "The pasted text")

    @rx.event
    def import_rejected(self, codes: list[str]) -> None:
        """The browser refused the file before sending it (too big, or several files)."""
        self.import_issues = []
        if "file-too-large" in codes:
            mb = UPLOAD_MAX_BYTES // (1024 * 1024)
            self.import_error = f"The file is larger than {mb} MB and was not imported."
        elif "too-many-files" in codes:
            self.import_error = "Choose one file at a time."
        else:
            self.import_error = "The file was not accepted."

    @rx.event
    async def import_upload(self, files: list[rx.UploadFile]) -> None:
        if not files:
            return
        f = files[0]
        data = await f.read(UPLOAD_MAX_BYTES + 1)
        name = f.name or "the file"
        self._import(data, name)
        if self.import_error:
            # Keep what was uploaded in the editor box (when it is readable text), to fix it there.
            try:
                if len(data) <= UPLOAD_MAX_BYTES:
                    self.import_text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass


# ---------------------------------------------------------------- components


def rejection_codes(rejected: rx.Var) -> rx.Var[list[str]]:
    """Only the refusal codes go to the server: the rejected ``File`` itself (maybe megabytes)
    would otherwise ride along in the websocket event and overflow it."""
    return rx.Var(f"({rejected}).flatMap((r) => (r.errors || []).map((e) => String(e.code)))").to(list[str])


def header() -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.heading("Workflows", size="7", weight="bold"),
            rx.text(
                "Your team's support flows. Edit a draft, publish it as a version, and roll back any time.",
                size="3",
                color=rx.color("gray", 11),
            ),
            direction="column",
            gap="6px",
        ),
        rx.spacer(),
        rx.cond(
            WorkflowsState.can_write,
            rx.flex(
                rx.button(
                    rx.icon("upload", size=15),
                    "Import YAML",
                    variant="surface",
                    color_scheme="gray",
                    on_click=WorkflowsState.open_import,
                    id="open-import",
                ),
                rx.button(
                    rx.icon("plus", size=15),
                    "New workflow",
                    on_click=WorkflowsState.open_create,
                    id="open-create",
                ),
                gap="10px",
            ),
        ),
        align="end",
        gap="16px",
        wrap="wrap",
    )


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
    return rx.flex(
        rx.cond(
            row.published,
            rx.badge(
                rx.icon("circle-dot", size=12),
                "Published v" + row.version.to_string(),
                color_scheme="indigo",
                variant="soft",
                size="2",
                custom_attrs={"data-testid": "wf-status"},
            ),
            rx.badge(
                "Draft",
                color_scheme="gray",
                variant="soft",
                size="2",
                custom_attrs={"data-testid": "wf-status"},
            ),
        ),
        rx.cond(
            row.draft_changed,
            rx.text(
                "unpublished changes",
                size="1",
                color=rx.color("amber", 11),
                custom_attrs={"data-testid": "wf-changed"},
            ),
        ),
        direction="column",
        gap="4px",
        align="start",
    )


def validity_badge(row: rx.Var[WorkflowRow]) -> rx.Component:
    return rx.cond(
        row.valid,
        rx.badge(
            rx.icon("circle-check", size=14),
            row.validity,
            color_scheme="green",
            variant="soft",
            size="2",
            custom_attrs={"data-testid": "wf-validity"},
        ),
        rx.tooltip(
            rx.badge(
                rx.icon("circle-alert", size=14),
                row.validity,
                color_scheme="red",
                variant="soft",
                size="2",
                custom_attrs={"data-testid": "wf-validity"},
            ),
            content=row.first_issue,
        ),
    )


def more_menu(row: rx.Var[WorkflowRow]) -> rx.Component:
    """The row's secondary actions: export for everyone, duplicate and delete for editors."""
    return rx.menu.root(
        rx.menu.trigger(
            rx.icon_button(
                rx.icon("ellipsis", size=16),
                variant="ghost",
                color_scheme="gray",
                size="1",
                custom_attrs={"aria-label": "More actions", "data-testid": "wf-more"},
            )
        ),
        rx.menu.content(
            rx.menu.item(
                rx.icon("download", size=14),
                "Export YAML",
                on_click=WorkflowsState.export(row.id),
                custom_attrs={"data-testid": "wf-export"},
            ),
            rx.cond(
                WorkflowsState.can_write,
                rx.fragment(
                    rx.menu.item(
                        rx.icon("copy", size=14),
                        "Duplicate",
                        on_click=WorkflowsState.duplicate(row.id),
                        custom_attrs={"data-testid": "wf-duplicate"},
                    ),
                    rx.menu.separator(),
                    rx.menu.item(
                        rx.icon("trash-2", size=14),
                        "Delete…",
                        color="red",
                        on_click=WorkflowsState.ask_delete(row.id, row.name),
                        custom_attrs={"data-testid": "wf-delete"},
                    ),
                ),
            ),
            align="end",
            min_width="170px",
        ),
    )


def workflow_row(row: rx.Var[WorkflowRow]) -> rx.Component:
    return rx.table.row(
        rx.table.row_header_cell(
            rx.flex(
                rx.link(
                    rx.text(row.name, weight="medium", custom_attrs={"data-testid": "wf-name"}),
                    href="/workflows/" + row.id + "/edit",
                    color=rx.color("gray", 12),
                    underline="hover",
                ),
                rx.code(
                    row.id,
                    variant="ghost",
                    size="1",
                    color_scheme="gray",
                    custom_attrs={"data-testid": "wf-id"},
                ),
                gap="8px",
                align="baseline",
                wrap="wrap",
            ),
            rx.text(
                row.description,
                size="1",
                color=rx.color("gray", 10),
                margin_top="2px",
                overflow="hidden",
                display="-webkit-box",
                style={"WebkitLineClamp": "2", "WebkitBoxOrient": "vertical"},
                title=row.description,
                custom_attrs={"data-testid": "wf-description"},
            ),
            rx.cond(
                row.valid,
                rx.fragment(),
                rx.text(
                    row.first_issue,
                    size="1",
                    color=rx.color("red", 11),
                    font_family="var(--code-font-family)",
                    margin_top="4px",
                    overflow="hidden",
                    display="-webkit-box",
                    style={"WebkitLineClamp": "2", "WebkitBoxOrient": "vertical"},
                    title=row.first_issue,
                    custom_attrs={"data-testid": "wf-error"},
                ),
            ),
            font_weight="normal",
        ),
        rx.table.cell(status_badge(row)),
        rx.table.cell(
            rx.text(
                row.edited_by,
                size="2",
                max_width="200px",
                # One line, cut with an ellipsis: an email must not wrap mid-word.
                white_space="nowrap",
                overflow="hidden",
                text_overflow="ellipsis",
                title=row.edited_by,
                custom_attrs={"data-testid": "wf-edited-by"},
            ),
            rx.text(row.edited_at, size="1", color=rx.color("gray", 10)),
        ),
        rx.table.cell(validity_badge(row)),
        rx.table.cell(
            rx.flex(
                rx.link(
                    rx.button(rx.icon("pencil", size=14), "Edit", variant="soft", size="1"),
                    href="/workflows/" + row.id + "/edit",
                    custom_attrs={"data-testid": "wf-edit"},
                ),
                rx.link(
                    rx.button(
                        rx.icon("history", size=14), "Versions", variant="soft", color_scheme="gray", size="1"
                    ),
                    href="/workflows/" + row.id + "/versions",
                    custom_attrs={"data-testid": "wf-versions"},
                ),
                more_menu(row),
                gap="10px",
                align="center",
                justify="end",
            ),
        ),
        custom_attrs={"data-workflow": row.id},
        vertical_align="middle",
    )


def workflows_table() -> rx.Component:
    return rx.card(
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    rx.table.column_header_cell("Workflow"),
                    rx.table.column_header_cell("Status", width="160px"),
                    rx.table.column_header_cell("Last edit", width="190px"),
                    rx.table.column_header_cell("Validity", width="110px"),
                    rx.table.column_header_cell("", width="210px"),
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


def template_card(t: rx.Var[TemplateRow]) -> rx.Component:
    return rx.card(
        rx.flex(
            rx.flex(
                rx.text(t.name, weight="medium", size="2", custom_attrs={"data-testid": "tpl-name"}),
                rx.spacer(),
                rx.cond(
                    t.valid,
                    rx.badge(plural_nodes(t.nodes), variant="surface", color_scheme="gray", size="1"),
                    rx.badge(
                        t.status,
                        color_scheme="red",
                        variant="soft",
                        size="1",
                        custom_attrs={"data-testid": "tpl-status"},
                    ),
                ),
                align="center",
                gap="8px",
            ),
            rx.text(
                t.description,
                size="1",
                color=rx.color("gray", 10),
                overflow="hidden",
                display="-webkit-box",
                style={"WebkitLineClamp": "2", "WebkitBoxOrient": "vertical"},
                min_height="2.8em",
            ),
            rx.button(
                "Use template",
                variant="soft",
                size="1",
                disabled=~t.valid,
                on_click=WorkflowsState.create_from_template(t.id),
                custom_attrs={"data-testid": "use-template"},
            ),
            direction="column",
            gap="8px",
            height="100%",
            justify="between",
        ),
        custom_attrs={"data-template": t.id},
    )


def plural_nodes(n: rx.Var[int]) -> rx.Var[str]:
    return n.to_string() + rx.cond(n == 1, " node", " nodes")


def templates_grid() -> rx.Component:
    return rx.grid(
        rx.foreach(WorkflowsState.templates, template_card),
        columns=rx.breakpoints(initial="1", sm="2", lg="3"),
        gap="12px",
        width="100%",
    )


def create_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("New workflow"),
            rx.dialog.description(
                "Start from an empty flow, or from one of the flows that ship with flowdesk.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.form(
                rx.flex(
                    rx.input(
                        name="name",
                        id="new-name",
                        placeholder="Name, e.g. Returns desk",
                        size="2",
                        flex="1",
                        custom_attrs={"aria-label": "Workflow name"},
                    ),
                    rx.button(rx.icon("plus", size=14), "Create blank", type="submit", id="create-blank"),
                    gap="10px",
                    align="center",
                ),
                on_submit=WorkflowsState.create_blank,
                no_validate=True,
                id="create-form",
                margin_top="16px",
            ),
            rx.cond(
                WorkflowsState.create_error != "",
                rx.text(
                    WorkflowsState.create_error,
                    size="1",
                    color=rx.color("red", 11),
                    margin_top="8px",
                    custom_attrs={"data-testid": "create-error", "role": "alert"},
                ),
            ),
            rx.flex(
                rx.separator(size="4"),
                rx.text("or", size="1", color=rx.color("gray", 10)),
                rx.separator(size="4"),
                align="center",
                gap="10px",
                margin_y="16px",
            ),
            rx.text("From a template", size="2", weight="bold", margin_bottom="10px", as_="div"),
            rx.scroll_area(templates_grid(), max_height="50vh", type="auto", scrollbars="vertical"),
            rx.flex(
                rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray")),
                justify="end",
                margin_top="16px",
            ),
            max_width="820px",
        ),
        open=WorkflowsState.create_open,
        on_open_change=WorkflowsState.set_create_open,
    )


def issue_line(i: rx.Var[IssueRow]) -> rx.Component:
    return rx.flex(
        rx.badge(i.where, color_scheme="red", variant="soft", size="1", flex_shrink="0"),
        rx.code(i.code, size="1", variant="ghost", color_scheme="red"),
        rx.text(i.message, size="1"),
        gap="8px",
        align="baseline",
        wrap="wrap",
        custom_attrs={"data-testid": "import-issue"},
    )


def import_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Import a workflow"),
            rx.dialog.description(
                "A file whose id matches an existing workflow updates its draft in place (published "
                "versions stay); any other id becomes a new draft.",
                size="2",
                color=rx.color("gray", 11),
            ),
            rx.upload.root(
                rx.flex(
                    rx.icon("file-up", size=22, color=rx.color("gray", 10)),
                    rx.text("Drop a .yaml file here, or click to choose one", size="2", weight="medium"),
                    rx.text("Up to 2 MB, UTF-8", size="1", color=rx.color("gray", 10)),
                    direction="column",
                    align="center",
                    gap="4px",
                    padding="18px",
                ),
                id=UPLOAD_ID,
                multiple=False,
                max_files=1,
                max_size=UPLOAD_MAX_BYTES,
                on_drop=WorkflowsState.import_upload(rx.upload_files(upload_id=UPLOAD_ID)),
                on_drop_rejected=lambda rejected: WorkflowsState.import_rejected(rejection_codes(rejected)),
                border=f"1px dashed {rx.color('gray', 7)}",
                border_radius="8px",
                background_color=rx.color("gray", 2),
                cursor="pointer",
                margin_top="16px",
                width="100%",
            ),
            rx.form(
                rx.flex(
                    rx.text("…or paste it", size="2", weight="medium"),
                    rx.text_area(
                        value=WorkflowsState.import_text,
                        on_change=WorkflowsState.set_import_text,
                        placeholder="version: 1\nid: my_workflow\nname: My workflow\nnodes: …",
                        rows="12",
                        font_family="var(--code-font-family)",
                        size="1",
                        width="100%",
                        id="import-text",
                        name="yaml",
                        custom_attrs={"aria-label": "Workflow YAML", "spellcheck": "false"},
                    ),
                    rx.cond(
                        WorkflowsState.import_error != "",
                        rx.callout.root(
                            rx.callout.icon(rx.icon("circle-alert")),
                            rx.flex(
                                rx.callout.text(
                                    WorkflowsState.import_error,
                                    weight="medium",
                                    custom_attrs={"data-testid": "import-error"},
                                ),
                                rx.foreach(WorkflowsState.import_issues, issue_line),
                                direction="column",
                                gap="6px",
                            ),
                            color_scheme="red",
                            variant="surface",
                            size="1",
                            custom_attrs={"role": "alert"},
                        ),
                    ),
                    rx.flex(
                        rx.dialog.close(
                            rx.button("Cancel", variant="soft", color_scheme="gray", type="button")
                        ),
                        rx.button(rx.icon("upload", size=14), "Import", type="submit", id="import-submit"),
                        gap="10px",
                        justify="end",
                    ),
                    direction="column",
                    gap="10px",
                ),
                on_submit=WorkflowsState.import_pasted,
                no_validate=True,
                id="import-form",
                margin_top="16px",
            ),
            max_width="720px",
        ),
        open=WorkflowsState.import_open,
        on_open_change=WorkflowsState.set_import_open,
    )


def delete_dialog() -> rx.Component:
    return confirm_dialog(
        "Delete workflow",
        rx.text(
            "Delete “",
            rx.text.strong(WorkflowsState.confirm_name),
            "” with its draft and every published version? Conversations using it stop working. "
            "Export it first if you may need it again.",
        ),
        "Delete workflow",
        open=WorkflowsState.confirm_id != "",
        on_cancel=WorkflowsState.cancel_delete,
        on_confirm=WorkflowsState.confirm_delete,
        confirm_id="confirm-delete",
    )


def empty_state() -> rx.Component:
    return rx.card(
        rx.flex(
            rx.flex(
                rx.icon("workflow", size=28, color=rx.color("accent", 9)),
                rx.text("No workflows yet", size="4", weight="bold"),
                rx.text(
                    "Start from one of the flows that ship with flowdesk, create a blank one, "
                    "or import a YAML file.",
                    size="2",
                    color=rx.color("gray", 11),
                    text_align="center",
                ),
                direction="column",
                align="center",
                gap="6px",
                padding_y="12px",
            ),
            rx.cond(WorkflowsState.can_write, templates_grid()),
            direction="column",
            gap="16px",
            padding="16px",
        ),
        width="100%",
        id="workflows-empty",
    )


@template(nav="/workflows")
def page() -> rx.Component:
    total = WorkflowsState.rows.length()
    return rx.flex(
        header(),
        rx.cond(
            WorkflowsState.loaded,
            rx.flex(
                success_callout(WorkflowsState.notice, "workflows-notice"),
                error_callout(WorkflowsState.error, "workflows-error"),
                rx.flex(
                    stat("Workflows", total, "workflow", "indigo", "stat-total"),
                    stat(
                        "Published", WorkflowsState.published_count, "circle-dot", "green", "stat-published"
                    ),
                    stat("With errors", WorkflowsState.invalid_count, "circle-alert", "red", "stat-invalid"),
                    gap="16px",
                    wrap="wrap",
                ),
                rx.cond(total > 0, workflows_table(), empty_state()),
                direction="column",
                gap="20px",
            ),
            rx.center(rx.spinner(size="3"), padding="48px", width="100%"),
        ),
        create_dialog(),
        import_dialog(),
        delete_dialog(),
        direction="column",
        gap="24px",
        id="workflows-page",
    )
