"""The workflow canvas: ``assets/flow_editor.jsx`` (React Flow 12) wrapped for Reflex.

Hybrid (DESIGN.md §2): the browser owns the live graph; Python gets it once per gesture
through ``on_graph_change`` and pushes a new ``graph`` (with a higher ``rev``) only when it
changed the graph itself. ``issues`` (badges) and ``highlight`` (a run's path) update without
resetting the canvas.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.event import no_args_event_spec
from reflex.vars import Var

XYFLOW = "@xyflow/react@12.12.1"


def _one_dict(value: Var[dict[str, Any]]) -> tuple[Var[dict[str, Any]]]:
    return (value,)


def _one_list(value: Var[list[str]]) -> tuple[Var[list[str]]]:
    return (value,)


class FlowEditor(rx.NoSSRComponent):
    """The canvas component; props and events are listed below."""

    # A local asset (``assets/``): Reflex copies it into the build and Vite bundles it.
    library = rx.asset("flow_editor.jsx").importable_path
    lib_dependencies: list[str] = [XYFLOW]
    tag = "FlowEditor"

    #: ``{"rev": int, "fit": bool, "nodes": [...], "edges": [...]}`` (``builder.canvas.to_flow``).
    graph: Var[dict[str, Any]]
    #: ``{node id: {"severity", "messages"}}`` (``builder.canvas.issues_by_node``).
    issues: Var[dict[str, Any]]
    highlight: Var[list[str]]
    read_only: Var[bool]

    on_graph_change: rx.EventHandler[_one_dict]
    on_select: rx.EventHandler[_one_list]
    on_add_node: rx.EventHandler[_one_dict]
    on_undo: rx.EventHandler[no_args_event_spec]
    on_redo: rx.EventHandler[no_args_event_spec]


flow_editor = FlowEditor.create
