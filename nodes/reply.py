"""``reply``: say a templated message to the user (``{{ order_id }}``, ``{{ lookup.body.status }}``)."""

from __future__ import annotations

from pydantic import Field

from builder.template import render
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext


class Config(NodeConfig):
    text: str = Field(min_length=1, max_length=4000, description="What to say; {{ variables }} allowed.")


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    text = render(cfg.text, inp.vars)
    return NodeResult(value={"text": text}, reply=text)


NODE = NodeType(
    type="reply",
    title="Reply",
    group="Messages",
    icon="message-square",
    config=Config,
    run=run,
    description=__doc__ or "",
    terminal=True,
)
