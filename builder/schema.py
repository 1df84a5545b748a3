"""THE workflow file format, version 1 (DESIGN.md §4).

These models describe the *shape* of a file. Per-type node configuration stays a plain
mapping here and is validated against the node type's own pydantic ``Config`` by
``builder.graph`` (so an unknown or broken node is reported as an issue on that node,
not as a failure to read the whole file).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CURRENT_VERSION = 1
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
NODE_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Output label every node that can fail offers; edges with ``when: error`` catch failures.
ERROR_OUTPUT = "error"
#: Output label a node with ``max_visits`` takes once its loop budget is spent.
EXHAUSTED_OUTPUT = "exhausted"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


class Policy(_Strict):
    """Per-node error handling, applied by the runtime around every node type."""

    timeout_s: float | None = Field(default=None, gt=0, le=300)
    retries: int = Field(default=0, ge=0, le=10)
    backoff_s: float = Field(default=0.2, ge=0, le=60)
    #: Value stored as the node's result when it fails and no ``error`` edge exists.
    default: Any = None


class Node(_Strict):
    id: str
    type: str
    name: str | None = None
    notes: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    policy: Policy | None = None
    #: Bounds a loop through this node; past it the node takes its ``exhausted`` output.
    max_visits: int | None = Field(default=None, ge=1, le=1000)
    #: ``all`` waits for every incoming branch (fan-in); ``any`` runs on the first.
    join: Literal["any", "all"] = "any"

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not NODE_ID_RE.match(v):
            raise ValueError("node ids start with a letter or _ and use only letters, digits and _ (max 64)")
        return v


class Edge(_Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    when: str | None = None


class Workflow(_Strict):
    version: int = CURRENT_VERSION
    id: str
    name: str
    description: str = ""
    notes: str | None = None
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    layout: dict[str, tuple[int, int]] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _slug_shape(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError("workflow ids are lowercase slugs: a letter, then a-z, 0-9 or _")
        return v

    def node(self, node_id: str) -> Node | None:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def entry(self) -> Node | None:
        for n in self.nodes:
            if n.type == "start":
                return n
        return None
