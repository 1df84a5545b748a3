"""``classify``: route the message to one of the intents (rules, a classifier trained on the
examples, an LLM judge when unsure), or to ``out_of_scope``; also picks the model tier."""

from __future__ import annotations

from pydantic import Field, field_validator

from builder.schema import ERROR_OUTPUT, EXHAUSTED_OUTPUT
from builder.template import render
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext
from runtime.router import OUT_OF_SCOPE, Intent

RESERVED = {OUT_OF_SCOPE, ERROR_OUTPUT, EXHAUSTED_OUTPUT}


class Config(NodeConfig):
    intents: list[Intent] = Field(
        min_length=1,
        max_length=200,
        description="The intents to choose from; each name is an output of this node.",
    )
    judge: bool = Field(default=True, description="Ask the LLM when the classifier is unsure.")
    threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Confidence below which the LLM judge decides (default: the deployment's).",
    )
    text: str = Field(default="{{ message }}", min_length=1, max_length=2000, description="What to classify.")

    @field_validator("intents")
    @classmethod
    def _unique_names(cls, v: list[Intent]) -> list[Intent]:
        names = [i.name for i in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"intent names must be unique; repeated: {', '.join(dupes)}")
        reserved = sorted(set(names) & RESERVED)
        if reserved:
            raise ValueError(f"intent names {reserved} are reserved outputs; rename them")
        return v


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    text = render(cfg.text, inp.vars)
    decision = ctx.router.decide(
        text,
        cfg.intents,
        tenant_id=ctx.tenant_id,
        llm=ctx.llm,
        judge=cfg.judge,
        threshold=cfg.threshold,
        budget_left_usd=ctx.budget_left_usd,
    )
    if decision.llm_call:  # the judge's call is metered like any other
        ctx.emit("llm_call", **decision.llm_call)
    record = decision.to_dict()
    ctx.emit("route_decided", **record)
    intent = decision.intent or OUT_OF_SCOPE
    return NodeResult(value=record, set={"intent": intent, "route": record}, output=intent)


NODE = NodeType(
    type="classify",
    title="Classify intent",
    group="AI",
    icon="git-fork",
    config=Config,
    run=run,
    description=__doc__ or "",
    outputs=lambda cfg: [*(i.name for i in cfg.intents), OUT_OF_SCOPE],
    sets=lambda cfg: {"intent", "route"},
)
