"""``condition``: branch on variables with structured conditions (no expressions); the first
case that matches names the output, none matching follows the default edge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from builder.conditions import Condition, evaluate, paths
from builder.schema import ERROR_OUTPUT, EXHAUSTED_OUTPUT
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext

LABEL_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(pattern=LABEL_PATTERN, description="Output taken when this case matches.")
    when: Condition = Field(
        description="e.g. {left: lookup.body.status, op: eq, right: shipped}; all:/any:/not: nest."
    )


class Config(NodeConfig):
    cases: list[Case] = Field(
        min_length=1, max_length=50, description="Checked in order; the first match wins."
    )

    @field_validator("cases")
    @classmethod
    def _labels_ok(cls, v: list[Case]) -> list[Case]:
        labels = [c.label for c in v]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"case labels must be unique; repeated: {', '.join(dupes)}")
        reserved = sorted(set(labels) & {ERROR_OUTPUT, EXHAUSTED_OUTPUT})
        if reserved:
            raise ValueError(f"labels {reserved} are reserved outputs; rename them")
        return v


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    for case in cfg.cases:
        if evaluate(case.when, inp.vars):
            return NodeResult(value={"matched": case.label}, output=case.label)
    return NodeResult(value={"matched": None})


NODE = NodeType(
    type="condition",
    title="Condition",
    group="Flow",
    icon="split",
    config=Config,
    run=run,
    description=__doc__ or "",
    outputs=lambda cfg: [c.label for c in cfg.cases],
    reads=lambda cfg: list(dict.fromkeys(p for c in cfg.cases for p in paths(c.when))),
)
