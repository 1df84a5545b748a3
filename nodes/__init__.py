"""The one explicit registry of node types: YAML ``type`` string -> ``NodeType``.

Adding a node type = one module here, one line below, one test file in tests/nodes/.
"""

from __future__ import annotations

from nodes import (
    classify,
    condition,
    end,
    extract,
    handoff,
    http_request,
    knowledge,
    llm,
    reply,
    saga,
    set,
    start,
    subflow,
)
from nodes.base import NodeType

NODE_TYPES: dict[str, NodeType] = {
    n.type: n
    for n in (
        start.NODE,
        reply.NODE,
        llm.NODE,
        classify.NODE,
        condition.NODE,
        extract.NODE,
        set.NODE,
        http_request.NODE,
        knowledge.NODE,
        handoff.NODE,
        end.NODE,
        subflow.NODE,
        saga.NODE,
    )
}

__all__ = ["NODE_TYPES", "NodeType"]
