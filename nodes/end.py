"""``end``: finish the conversation's flow; the next message starts again at ``start``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext


class Config(NodeConfig):
    status: Literal["resolved", "unresolved", "abandoned"] = Field(
        default="resolved", description="How the conversation ended (analytics)."
    )


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    ctx.emit("conversation_ended", status=cfg.status)
    return NodeResult(value={"status": cfg.status})


NODE = NodeType(
    type="end",
    title="End",
    group="Flow",
    icon="square",
    config=Config,
    run=run,
    description=__doc__ or "",
    terminal=True,
)
