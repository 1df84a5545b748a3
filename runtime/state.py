"""The LangGraph state every compiled workflow shares (so subflows nest as subgraphs).

(No ``from __future__ import annotations`` here: LangGraph reads these hints on every
``add_node``, and real objects are much cheaper for it than strings to evaluate.)

Every reducer is idempotent for repeated writes of the same data: a subgraph hands its
whole state back to the parent, and that must not duplicate messages.
"""

from typing import Annotated, Any, TypedDict

RESET = "__reset__"


def merge(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    if not new:
        return old or {}
    if new.get(RESET):
        return {k: v for k, v in new.items() if k != RESET}
    return {**(old or {}), **new}


def append_unique(old: list[dict[str, Any]] | None, new: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Append messages whose ``id`` is not there yet."""
    old = old or []
    if not new:
        return old
    seen = {m.get("id") for m in old}
    return old + [m for m in new if m.get("id") not in seen]


class FlowState(TypedDict, total=False):
    #: The conversation: ``{"id", "role": "user"|"assistant", "content"}``.
    messages: Annotated[list[dict[str, Any]], append_unique]
    #: Flat variable namespace (slots, ``set`` values, each node's result under its id).
    vars: Annotated[dict[str, Any], merge]
    #: Node id -> the output label it took last.
    outputs: Annotated[dict[str, Any], merge]
    #: Node id -> visits since the flow last (re)started at ``start`` (bounded loops).
    visits: Annotated[dict[str, Any], merge]
