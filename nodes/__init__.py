"""The one explicit registry of node types: YAML ``type`` string -> ``NodeType``.

Adding a node type = one module here, one line below, one test file in tests/nodes/.
"""

from __future__ import annotations

from nodes import end, reply, start, subflow
from nodes.base import NodeType

NODE_TYPES: dict[str, NodeType] = {
    n.type: n
    for n in (
        start.NODE,
        reply.NODE,
        end.NODE,
        subflow.NODE,
    )
}

__all__ = ["NODE_TYPES", "NodeType"]
