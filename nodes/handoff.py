"""``handoff``: hand the conversation to a human agent (queue, priority, reason) and tell the
user; the bot stays quiet while a person takes over."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from builder.template import render
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext


class Config(NodeConfig):
    reason: str = Field(
        default="{{ message }}",
        min_length=1,
        max_length=2000,
        description="Why a human is needed (shown to the agent); {{ variables }} allowed.",
    )
    message: str = Field(
        default="I'm connecting you with a colleague who can help. They'll reply here shortly.",
        min_length=1,
        max_length=2000,
        description="Said to the user; {{ variables }} allowed.",
    )
    priority: Literal["low", "normal", "high", "urgent"] = Field(
        default="normal", description="How soon an agent should pick it up."
    )
    queue: str = Field(
        default="support",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Which team's queue receives the conversation.",
    )


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    reason = render(cfg.reason, inp.vars).strip() or "Customer asked for a human"
    said = render(cfg.message, inp.vars)
    ctx.handoff(reason, cfg.priority, cfg.queue)
    value = {"status": "waiting_human", "reason": reason, "priority": cfg.priority, "queue": cfg.queue}
    return NodeResult(value=value, reply=said)


NODE = NodeType(
    type="handoff",
    title="Hand off to a human",
    group="Flow",
    icon="headset",
    config=Config,
    run=run,
    description=__doc__ or "",
    terminal=True,
)
