"""``set``: give variables values (constants or {{ templates }}; a value that is exactly one
template keeps its type, so ``"{{ order.total }}"`` stays a number)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from builder.template import render_value
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class Config(NodeConfig):
    values: dict[str, Any] = Field(
        min_length=1,
        max_length=100,
        description="Variable name -> value; strings may use {{ variables }}.",
    )

    @field_validator("values")
    @classmethod
    def _names_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in v if not NAME_RE.fullmatch(k)]
        if bad:
            raise ValueError(f"variable names start with a letter or _ and use letters, digits and _: {bad}")
        return v


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    rendered = {k: render_value(v, inp.vars) for k, v in cfg.values.items()}
    return NodeResult(value=rendered, set=rendered)


NODE = NodeType(
    type="set",
    title="Set variables",
    group="Data",
    icon="variable",
    config=Config,
    run=run,
    description=__doc__ or "",
    sets=lambda cfg: set(cfg.values),
)
