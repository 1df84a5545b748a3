"""``start``: where every turn of a new conversation begins; puts the message in scope."""

from __future__ import annotations

from pydantic import Field

from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext


class Config(NodeConfig):
    greeting: str | None = Field(
        default=None, description="Said once, on the first turn of a conversation (optional)."
    )


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    first_turn = sum(1 for m in inp.messages if m.get("role") == "user") <= 1
    reply = cfg.greeting if cfg.greeting and first_turn else None
    return NodeResult(value={"message": inp.message}, reply=reply)


NODE = NodeType(
    type="start",
    title="Start",
    group="Flow",
    icon="play",
    config=Config,
    run=run,
    description=__doc__ or "",
)
