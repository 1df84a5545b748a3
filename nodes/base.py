"""What every node type is: a pydantic ``Config`` plus a pure-ish ``run``.

A node type never touches the network, the database or LangGraph directly: everything
with side effects goes through the ``RunContext`` it is handed (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from builder.template import strings_in, variables

if TYPE_CHECKING:
    from runtime.context import RunContext


class NodeConfig(BaseModel):
    """Base for node configs: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class NodeInput:
    """What a node sees of the conversation."""

    node_id: str
    #: Flat variable namespace: slots and ``set`` values at the top, each node's result
    #: under its id (``lookup.body.status``), plus ``message`` (latest user text),
    #: ``intent`` and ``route`` (latest router decision).
    vars: dict[str, Any]
    messages: list[dict[str, str]]

    @property
    def message(self) -> str:
        return str(self.vars.get("message") or "")


@dataclass
class NodeResult:
    #: Stored as ``vars[<node id>]``.
    value: Any = None
    #: Top-level variables to set (slots, ``set`` node values).
    set: dict[str, Any] = field(default_factory=dict)
    #: Named output taken; ``None`` follows the default (unlabelled) edges.
    output: str | None = None
    #: Text said to the user now.
    reply: str | None = None


def _template_reads(cfg: BaseModel) -> list[str]:
    return [v for s in strings_in(cfg.model_dump(mode="json")) for v in variables(s)]


@dataclass(frozen=True)
class NodeType:
    type: str
    title: str
    group: str
    icon: str
    config: type[NodeConfig]
    run: Callable[[Any, NodeInput, RunContext], NodeResult]
    description: str = ""
    #: Named outputs besides the default path (``error`` is added when ``can_fail``).
    outputs: Callable[[Any], list[str]] = lambda cfg: []
    can_fail: bool = False
    #: Top-level variables the node sets (its own id is always set).
    sets: Callable[[Any], set[str]] = lambda cfg: set()
    #: Variable paths the node reads; by default every ``{{ template }}`` in its config.
    reads: Callable[[Any], list[str]] = _template_reads
    #: Ends the turn to wait for the user (LangGraph interrupt); resumes on the next message.
    asks_user: bool = False
    #: A conversation may stop after this node without a warning.
    terminal: bool = False
    #: Names of other workflows the node calls (``subflow``).
    calls: Callable[[Any], list[str]] = lambda cfg: []
    extra: dict[str, Any] = field(default_factory=dict)

    def all_outputs(self, cfg: Any) -> list[str]:
        outs = list(self.outputs(cfg))
        if self.can_fail and "error" not in outs:
            outs.append("error")
        return outs
