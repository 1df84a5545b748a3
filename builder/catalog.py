"""The shipped workflows (``workflows/*.yaml``) as plain rows: what the first page lists.

Plain Python, no Reflex: the UI and the CLI read the same answer. Every file is loaded with
``builder.yaml_io.load`` and checked with ``builder.graph.validate``; a file that cannot be
loaded at all is listed as invalid with its load errors instead of breaking the listing.
Subflows resolve against the other workflows of the same directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder import graph
from builder.issues import Issue, WorkflowLoadError
from builder.schema import Workflow
from builder.yaml_io import Loaded, load

ROOT = Path(__file__).resolve().parent.parent
#: Environment variable that points the catalog at another directory (tests, demos).
DIR_ENV = "FLOWDESK_WORKFLOWS_DIR"
PATTERN = "*.yaml"
#: Conversation tests (builder.conversation_tests) may sit beside their workflow: not workflows.
TESTS_SUFFIX = ".tests.yaml"


def workflows_dir() -> Path:
    """``$FLOWDESK_WORKFLOWS_DIR`` when set, else ``<repo>/workflows``."""
    configured = os.environ.get(DIR_ENV, "").strip()
    return Path(configured) if configured else ROOT / "workflows"


def list_workflows(directory: Path | None = None) -> list[dict[str, Any]]:
    """One row per ``*.yaml`` file (not ``*.tests.yaml``), sorted by file name.

    Each row: ``{id, name, description, nodes, valid, errors, warnings, file}`` where
    ``nodes`` is the node count and ``errors``/``warnings`` are issue lines in the CLI
    format (``file:line:col: CODE message``).
    """
    directory = workflows_dir() if directory is None else directory
    files = (
        sorted(p for p in directory.glob(PATTERN) if not p.name.endswith(TESTS_SUFFIX))
        if directory.is_dir()
        else []
    )

    loaded: dict[Path, Loaded | list[Issue]] = {}
    for path in files:
        try:
            loaded[path] = load(path.read_bytes(), filename=path.name)
        except WorkflowLoadError as e:
            loaded[path] = e.issues
        except OSError as e:  # unreadable file: list it, do not hide it
            loaded[path] = [Issue("FILE_UNREADABLE", f"cannot read the file: {e.strerror or e}")]

    by_id: dict[str, list[Path]] = {}
    workflows: dict[str, Workflow] = {}
    for path, item in loaded.items():
        if isinstance(item, Loaded):
            by_id.setdefault(item.workflow.id, []).append(path)
            workflows.setdefault(item.workflow.id, item.workflow)
    return [_row(path, item, by_id, workflows.get) for path, item in loaded.items()]


def _row(
    path: Path,
    item: Loaded | list[Issue],
    by_id: dict[str, list[Path]],
    resolve: Callable[[str], Workflow | None],
) -> dict[str, Any]:
    if not isinstance(item, Loaded):
        return _entry(path, path.stem, path.stem, "", 0, item)
    wf = item.workflow
    issues = list(item.warnings)
    issues += graph.validate(wf, loaded=item, resolve_workflow=resolve)
    others = [p.name for p in by_id.get(wf.id, []) if p != path]
    if others:
        line, col = item.position(("id",))
        issues.append(
            Issue(
                "WORKFLOW_DUPLICATE_ID",
                f"workflow id {wf.id!r} is also used by {', '.join(others)}",
                line=line,
                col=col,
                hint="give every workflow file its own id",
            )
        )
    return _entry(path, wf.id, wf.name, wf.description, len(wf.nodes), issues)


def _entry(
    path: Path, wf_id: str, name: str, description: str, nodes: int, issues: list[Issue]
) -> dict[str, Any]:
    errors = [i.format(path.name) for i in issues if i.severity == "error"]
    warnings = [i.format(path.name) for i in issues if i.severity == "warning"]
    return {
        "id": wf_id,
        "name": name,
        "description": description,
        "nodes": nodes,
        "valid": not errors,
        "errors": errors,
        "warnings": warnings,
        "file": path.name,
    }
