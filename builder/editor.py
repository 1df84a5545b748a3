"""What the editor page does with the database: open and save (autosave) a tenant's draft.

Each call is one tenant-scoped transaction through ``builder.service``: the canvas, the node
form and the YAML view all save through ``save_draft``, the same validation a YAML import
gets. Returns plain data (``EditorView``) for the UI to copy. Publishing is
``app.workflow_ops.publish`` (audited, like the versions page).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session

from builder import service as wfs
from builder.issues import Issue
from builder.schema import Workflow
from builder.yaml_io import dump, load
from core.db import tenant_session
from core.errors import ServiceError

_NODE_LINE = re.compile(r"^  - id: (?P<id>\S+)\s*$", re.M)
#: Recently parsed drafts by text: every canvas gesture would otherwise parse the same draft
#: again (about 150 ms at 500 nodes). Workflows are never mutated (edits are copies).
_PARSED: OrderedDict[str, Workflow] = OrderedDict()
_PARSED_MAX = 32
_lock = threading.Lock()


def _remember(text: str, wf: Workflow) -> None:
    with _lock:
        _PARSED[text] = wf
        _PARSED.move_to_end(text)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)


def parsed(text: str) -> Workflow:
    """``load(text).workflow`` for a stored draft, from the cache when it was seen recently."""
    with _lock:
        wf = _PARSED.get(text)
    if wf is None:
        wf = load(text).workflow
        _remember(text, wf)
    return wf


@dataclass
class EditorView:
    slug: str
    name: str
    yaml: str
    etag: str
    issues: list[Issue] = field(default_factory=list)
    published_version: int | None = None
    #: Published, but the draft differs from the live version ("unpublished changes").
    draft_changed: bool = False


def node_lines(text: str) -> dict[str, int]:
    """``{node id: line}`` of each node's ``- id:`` line in a canonical file (1-based)."""
    out: dict[str, int] = {}
    for m in _NODE_LINE.finditer(text):
        out.setdefault(m.group("id").strip("'\""), text.count("\n", 0, m.start()) + 1)
    return out


def with_lines(issues: list[Issue], text: str) -> list[Issue]:
    """Issues on a node get that node's line when they have none (``save_draft`` gives none)."""
    lines = node_lines(text)
    return [
        Issue(i.code, i.message, i.severity, i.node_id, lines.get(i.node_id or ""), 1, i.hint)
        if i.line is None and i.node_id in lines
        else i
        for i in issues
    ]


def open_draft(tenant_id: str, slug: str, *, engine: Engine | None = None) -> EditorView:
    with tenant_session(tenant_id, engine=engine) as s:
        row = wfs.get(s, tenant_id=tenant_id, slug=slug)
        issues = wfs.issues_of(s, tenant_id=tenant_id, row=row)
        return EditorView(
            row.slug,
            row.name,
            row.draft_yaml,
            row.draft_hash,
            with_lines(issues, row.draft_yaml),
            row.published_version,
            wfs.draft_changed(s, tenant_id=tenant_id, row=row),
        )


#: Called inside the save's transaction (the page writes its audit entry there).
OnSaved = Callable[[Session, wfs.Draft], None]


def save(
    tenant_id: str,
    author: str,
    wf: Workflow,
    *,
    if_match: str | None = None,
    on_saved: OnSaved | None = None,
    engine: Engine | None = None,
) -> EditorView:
    """Autosave: the canvas's workflow becomes the draft (invalid drafts are kept, with issues)."""
    return save_text(
        tenant_id, author, dump(wf), slug=wf.id, if_match=if_match, on_saved=on_saved, engine=engine
    )


def save_text(
    tenant_id: str,
    author: str,
    text: str,
    *,
    slug: str,
    if_match: str | None = None,
    on_saved: OnSaved | None = None,
    engine: Engine | None = None,
) -> EditorView:
    """The YAML view's text becomes the draft; ``core.errors.Invalid`` (with line-numbered issues) when it
    does not parse or names another workflow."""
    with tenant_session(tenant_id, engine=engine) as s:
        draft = wfs.save_draft(
            s, tenant_id=tenant_id, yaml_text=text, author=author, if_match=if_match, expect_slug=slug
        )
        if on_saved is not None:
            on_saved(s, draft)
        row = draft.row
        _remember(row.draft_yaml, draft.workflow)  # load(dump(w)) == w: the draft text parses to it
        return EditorView(
            row.slug,
            row.name,
            row.draft_yaml,
            row.draft_hash,
            with_lines(draft.issues, row.draft_yaml),
            row.published_version,
            wfs.draft_changed(s, tenant_id=tenant_id, row=row),
        )


def parse_issues(err: ServiceError) -> list[Issue]:
    """The (line-numbered) issues a refused save or publish carries."""
    raw = err.details.get("issues") if isinstance(err.details, dict) else None
    if not raw:
        return [Issue(err.code, err.message)]
    return [
        Issue(
            d.get("code", err.code),
            d.get("message", ""),
            d.get("severity", "error"),
            d.get("node_id"),
            d.get("line"),
            d.get("col"),
            d.get("hint"),
        )
        for d in raw
    ]
