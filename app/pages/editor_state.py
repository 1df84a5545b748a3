"""The editor page's state: thin glue between the canvas events and ``builder.canvas`` /
``builder.editor`` (pure edits, and one tenant-scoped save per change).

The current draft lives here as its canonical YAML (a backend-only var); every change is
parsed, edited, saved as the draft (autosave) and recorded in the undo history. The canvas
gets a new ``graph`` only when Python changed the graph itself (a higher ``rev``).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import reflex as rx

from app import workflow_ops
from app.state import State
from builder import canvas
from builder import editor as ops
from builder.issues import Issue
from builder.schema import Workflow
from core.errors import ServiceError
from nodes import NODE_TYPES
from tenants import service as accounts
from tenants.principal import Principal
from tenants.tokens import WORKFLOWS_WRITE

TABS = ("node", "issues", "yaml")


@dataclasses.dataclass
class IssueRow:
    severity: str = "error"
    code: str = ""
    message: str = ""
    node_id: str = ""
    line: int = 0
    hint: str = ""

    @classmethod
    def of(cls, i: Issue) -> IssueRow:
        return cls(i.severity, i.code, i.message, i.node_id or "", i.line or 0, i.hint or "")


@dataclasses.dataclass
class PaletteItem:
    type: str = ""
    title: str = ""
    icon: str = ""
    group: str = ""
    description: str = ""
    first: bool = False  # first of its group: the palette prints the group name above it


@dataclasses.dataclass
class Field:
    name: str = ""
    label: str = ""
    kind: str = "text"
    value: str = ""
    description: str = ""
    required: bool = False
    options: list[str] = dataclasses.field(default_factory=list)
    placeholder: str = ""
    error: str = ""


def _signature(fields: list[Field]) -> list[tuple[Any, ...]]:
    """Plain tuples (the state may hand back proxied fields) to tell whether a form changed."""
    return [
        (
            f.name,
            f.label,
            f.kind,
            f.value,
            f.description,
            f.required,
            tuple(f.options),
            f.placeholder,
            f.error,
        )
        for f in fields
    ]


PALETTE = [
    PaletteItem(**item, first=i == 0) for group in canvas.palette() for i, item in enumerate(group["items"])
]


def _grouped(items: list[PaletteItem]) -> list[PaletteItem]:
    """``first`` set again after filtering."""
    seen: set[str] = set()
    out = []
    for p in items:
        out.append(dataclasses.replace(p, first=p.group not in seen))
        seen.add(p.group)
    return out


def _audit(p: Principal) -> ops.OnSaved:
    """Every autosave is a write: one audit entry in its transaction, as the REST API writes."""

    def write(s: Any, draft: Any) -> None:
        accounts.audit(
            s, p, p.tenant_id, "workflow.update", draft.row.slug, etag=draft.etag, valid=draft.row.draft_valid
        )

    return write


class EditorState(State):
    slug: str = ""
    wf_name: str = ""
    loaded: bool = False
    load_error: str = ""
    read_only: bool = False

    graph: dict[str, Any] = {"rev": 0, "nodes": [], "edges": []}
    node_issues: dict[str, Any] = {}
    issues: list[IssueRow] = []
    highlight: list[str] = []

    yaml_text: str = ""
    yaml_rev: int = 0
    yaml_errors: list[IssueRow] = []

    selected: list[str] = []
    form_fields: list[Field] = []
    form_rev: int = 0
    suggestions: list[str] = []
    selected_kind: str = ""
    selected_title: str = ""
    selected_description: str = ""

    tab: str = "node"
    palette_query: str = ""
    saves: int = 0
    status: str = ""
    save_error: str = ""
    published_version: int = 0
    draft_changed: bool = False
    publish_message: str = ""
    publish_ok: bool = False
    can_undo: bool = False
    can_redo: bool = False

    _yaml: str = ""
    _etag: str = ""
    _past: list[str] = []
    _future: list[str] = []
    _history_of: str = ""  # the slug the undo history belongs to

    # ------------------------------------------------------------ derived

    @rx.var
    def error_count(self) -> int:
        return sum(1 for i in self.issues if i.severity == "error")

    @rx.var
    def warning_count(self) -> int:
        return sum(1 for i in self.issues if i.severity == "warning")

    @rx.var
    def palette(self) -> list[PaletteItem]:
        q = self.palette_query.strip().lower()
        if not q:
            return PALETTE
        return _grouped([p for p in PALETTE if q in f"{p.type} {p.title} {p.group} {p.description}".lower()])

    @rx.var
    def form_key(self) -> str:
        return f"{','.join(self.selected)}:{self.form_rev}"

    @rx.var
    def yaml_key(self) -> str:
        return str(self.yaml_rev)

    # ------------------------------------------------------------ plumbing

    def _principal(self) -> Principal | None:
        p = self.principal()
        if p is None:
            self.load_error = "Your session has ended; sign in again."
        return p

    def _workflow(self) -> Workflow:
        return ops.parsed(self._yaml)

    def _history(self) -> canvas.History:
        return canvas.History(list(self._past), list(self._future))

    def _set_history(self, h: canvas.History) -> None:
        self._past, self._future = h.past, h.future
        self.can_undo, self.can_redo = h.can_undo, h.can_redo

    def _show(self, view: ops.EditorView, *, push_graph: bool, fit: bool = False) -> None:
        """Copy a saved draft into the vars; ``push_graph`` re-renders the canvas from it."""
        self._yaml, self._etag = view.yaml, view.etag
        self.wf_name = view.name
        self.published_version = view.published_version or 0
        self.draft_changed = view.draft_changed
        self.issues = [IssueRow.of(i) for i in view.issues]
        self.node_issues = canvas.issues_by_node(view.issues)
        self.yaml_errors = []
        if self.tab == "yaml":  # otherwise the text goes to the browser when the tab opens
            self._push_yaml()
        wf = self._workflow()
        self.selected = [s for s in self.selected if wf.node(s) is not None]
        if push_graph:
            flow = canvas.to_flow(wf)
            chosen = set(self.selected)
            for n in flow["nodes"]:
                if n["id"] in chosen:
                    n["selected"] = True
            self.graph = {"rev": int(self.graph.get("rev", 0)) + 1, "fit": fit, **flow}
        self._refresh_form(wf)

    def _push_yaml(self) -> None:
        self.yaml_text = self._yaml
        self.yaml_rev += 1

    def _refresh_form(self, wf: Workflow) -> None:
        node = wf.node(self.selected[0]) if len(self.selected) == 1 else None
        if node is None:
            self.form_rev += 1
            self.form_fields, self.suggestions = [], []
            self.selected_kind = self.selected_title = self.selected_description = ""
            return
        spec = NODE_TYPES.get(node.type)
        self.selected_kind = node.type
        self.selected_title = spec.title if spec else node.type
        self.selected_description = canvas._first_sentence(spec.description) if spec else "Unknown node type."
        fields = [Field(**dataclasses.asdict(f)) for f in canvas.form_fields(node)]
        # The inputs are uncontrolled: a new key remounts them with the stored values. Only do
        # that when those values changed, so a save elsewhere (a drag, a late selection answer)
        # never wipes what is being typed in the form. A new selection changes the key anyway.
        if _signature(fields) != _signature(self.form_fields):
            self.form_rev += 1
            self.form_fields = fields
        self.suggestions = canvas.upstream_variables(wf, node.id)

    def _commit(self, wf: Workflow, *, push_graph: bool, fit: bool = False) -> None:
        """Save ``wf`` as the draft (autosave) and record the step for undo."""
        p = self._principal()
        if p is None or self.read_only:
            return
        before = self._yaml
        try:
            view = ops.save(p.tenant_id, p.actor_id, wf, if_match=self._etag or None, on_saved=_audit(p))
        except ServiceError as e:
            self.save_error = e.message
            self.status = "Not saved"
            # The canvas may now differ from the draft: show the stored draft again.
            try:
                self._show(ops.open_draft(p.tenant_id, self.slug), push_graph=True)
            except ServiceError as gone:  # deleted meanwhile
                self.load_error = gone.message
            return
        h = self._history()
        h.record(before, view.yaml)
        self._set_history(h)
        self._saved()
        self._show(view, push_graph=push_graph, fit=fit)

    def _saved(self) -> None:
        self.saves += 1
        self.save_error = ""
        self.publish_message = ""
        self.status = f"Saved {datetime.now(UTC).strftime('%H:%M:%S')} UTC"

    # ------------------------------------------------------------ page load

    @rx.event
    def load(self) -> None:
        self.loaded = False
        self.load_error = ""
        slug = str(self.router.page.params.get("id", "") or "")
        if slug != self._history_of:  # a reload keeps the undo history of the same workflow
            self._past, self._future, self._history_of = [], [], slug
        self.slug = slug
        self.selected, self.highlight, self.tab = [], [], "node"
        self.can_undo, self.can_redo = bool(self._past), bool(self._future)
        self.publish_message, self.save_error, self.status = "", "", ""
        p = self._principal()
        if p is None:
            return
        self.read_only = not p.allows(WORKFLOWS_WRITE)
        try:
            view = ops.open_draft(p.tenant_id, self.slug)
        except ServiceError as e:
            self.load_error = e.message
            return
        self._show(view, push_graph=True, fit=True)
        self.status = "All changes saved"
        self.loaded = True

    # ------------------------------------------------------------ canvas events

    @rx.event
    def graph_changed(self, graph: dict[str, Any]) -> None:
        """Drag-stop, connect, delete, paste: the canvas already shows it; save it."""
        old = self._workflow()
        try:
            wf = canvas.from_flow(old, graph)
        except ServiceError as e:
            self.save_error = e.message
            return
        new_ids = [n.id for n in wf.nodes if old.node(n.id) is None]
        # Pasted nodes need their cards from Python (summary, outputs); a move does not.
        self._commit(wf, push_graph=bool(new_ids))

    @rx.event
    def select_nodes(self, ids: list[str]) -> None:
        self.selected = [str(i) for i in ids][:200]
        if len(self.selected) == 1 and self.tab != "yaml":
            self.tab = "node"
        self._refresh_form(self._workflow())

    @rx.event
    def add_node(self, drop: dict[str, Any]) -> None:
        try:
            x, y = float(drop.get("x", 0)), float(drop.get("y", 0))
            wf, node_id = canvas.add_node(self._workflow(), str(drop.get("type", "")), (x, y))
        except (ServiceError, TypeError, ValueError) as e:
            self.save_error = getattr(e, "message", str(e))
            return
        self.selected = [node_id]
        self.tab = "node"
        self._commit(wf, push_graph=True)

    @rx.event
    def add_from_palette(self, node_type: str) -> None:
        """Click on a palette item: the node goes below the lowest card."""
        wf = self._workflow()
        laid = canvas.with_layout(wf) if wf.nodes else wf
        y = max((p[1] for p in laid.layout.values()), default=-canvas.DY_GAP) + canvas.DY_GAP
        self.add_node({"type": node_type, "x": 0, "y": y})

    @rx.event
    def undo(self) -> None:
        h = self._history()
        text = h.undo(self._yaml)
        if text is not None:
            self._restore(text, h)

    @rx.event
    def redo(self) -> None:
        h = self._history()
        text = h.redo(self._yaml)
        if text is not None:
            self._restore(text, h)

    def _restore(self, text: str, h: canvas.History) -> None:
        p = self._principal()
        if p is None or self.read_only:
            return
        try:
            view = ops.save_text(
                p.tenant_id, p.actor_id, text, slug=self.slug, if_match=self._etag or None, on_saved=_audit(p)
            )
        except ServiceError as e:
            self.save_error = e.message
            return
        self._set_history(h)
        self._saved()
        self._show(view, push_graph=True)

    @rx.event
    def auto_layout(self) -> None:
        self._commit(canvas.relayout(self._workflow()), push_graph=True, fit=True)

    @rx.event
    def duplicate_selected(self) -> None:
        wf, ids = canvas.duplicate_nodes(self._workflow(), self.selected)
        if ids:
            self.selected = ids
            self._commit(wf, push_graph=True)

    @rx.event
    def delete_selected(self) -> None:
        if self.selected:
            wf = canvas.delete_nodes(self._workflow(), self.selected)
            self.selected = []
            self._commit(wf, push_graph=True)

    @rx.event
    def focus_node(self, node_id: str) -> None:
        """An issue's node link: select it on the canvas and open its form."""
        if self._workflow().node(node_id) is None:
            return
        self.selected = [node_id]
        self.tab = "node"
        self._show(
            ops.EditorView(
                self.slug,
                self.wf_name,
                self._yaml,
                self._etag,
                self._issues(),
                self.published_version,
                self.draft_changed,
            ),
            push_graph=True,
        )

    def _issues(self) -> list[Issue]:
        return [
            Issue(i.code, i.message, i.severity, i.node_id or None, i.line or None, None, i.hint or None)  # type: ignore[arg-type]
            for i in self.issues
        ]

    # ------------------------------------------------------------ side panel

    @rx.event
    def set_tab(self, tab: str) -> None:
        self.tab = tab if tab in TABS else "node"
        # A refused text stays on screen with its errors; otherwise show the current draft.
        if self.tab == "yaml" and not self.yaml_errors and self.yaml_text != self._yaml:
            self._push_yaml()

    @rx.event
    def set_palette_query(self, q: str) -> None:
        self.palette_query = q[:80]

    @rx.event
    def save_form(self, form: dict[str, Any]) -> None:
        if len(self.selected) != 1:
            return
        try:
            wf, errors = canvas.apply_form(self._workflow(), self.selected[0], form)
        except ServiceError as e:
            self.save_error = e.message
            return
        if errors:
            self.form_fields = [
                dataclasses.replace(f, error=errors.get(f.name, "")) for f in self.form_fields
            ]
            return
        new_id = form.get(canvas.NODE_ID_FIELD)
        if isinstance(new_id, str) and new_id.strip() and wf.node(new_id.strip()) is not None:
            self.selected = [new_id.strip()]
        self._commit(wf, push_graph=True)

    @rx.event
    def insert_variable(self, field_name: str, var: str) -> Any:
        """A suggestion chip: put ``{{ var }}`` at the cursor of the field's textarea."""
        token = "{{ " + var + " }}"
        return rx.call_script(
            f"(() => {{ const el = document.getElementById({json.dumps('field-' + field_name)});"
            f" if (!el) return; const s = el.selectionStart ?? el.value.length;"
            f" el.setRangeText({json.dumps(token)}, s, el.selectionEnd ?? s, 'end'); el.focus(); }})()"
        )

    @rx.event
    def apply_yaml(self, text: str) -> None:
        """The YAML view: a text that parses replaces the draft (and the canvas)."""
        if text == self._yaml or self.read_only:
            return
        p = self._principal()
        if p is None:
            return
        before = self._yaml
        try:
            view = ops.save_text(
                p.tenant_id, p.actor_id, text, slug=self.slug, if_match=self._etag or None, on_saved=_audit(p)
            )
        except ServiceError as e:
            self.yaml_errors = [IssueRow.of(i) for i in ops.parse_issues(e)]
            self.yaml_text = text  # keep what the user typed on screen
            return
        h = self._history()
        h.record(before, view.yaml)
        self._set_history(h)
        self._saved()
        self._show(view, push_graph=True)

    @rx.event
    def publish(self) -> Any:
        """Publish through ``builder.service.publish``: it refuses while error-level issues remain."""
        p = self._principal()
        if p is None or self.read_only:
            return None
        self.tab = "issues"
        try:
            number = workflow_ops.publish(p, self.slug).number
        except ServiceError as e:
            self.publish_ok = False
            self.publish_message = e.message
            return None
        self.published_version, self.draft_changed = number, False
        self.publish_ok = True
        self.publish_message = f"Published as version {number}."
        return rx.toast.success(self.publish_message, position="bottom-center")
