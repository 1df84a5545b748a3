"""``subflow``: run another workflow (by its slug) as a nested graph, then continue here.

The called workflow's published version is resolved once at the start of the turn; its
variables land in the same namespace, so a later node can read what it collected.
"""

from __future__ import annotations

from pydantic import Field

from builder.schema import SLUG_RE
from nodes.base import NodeConfig, NodeInput, NodeResult, NodeType
from runtime.context import RunContext


class Config(NodeConfig):
    workflow: str = Field(pattern=SLUG_RE.pattern, description="The slug (id) of the workflow to run.")


def run(cfg: Config, inp: NodeInput, ctx: RunContext) -> NodeResult:
    # The compiler nests the called workflow's graph in place of this node; run() is
    # never called for a subflow. Reaching it means the graph was built some other way.
    raise RuntimeError(f"subflow '{cfg.workflow}' must be compiled as a nested graph")


NODE = NodeType(
    type="subflow",
    title="Subflow",
    group="Flow",
    icon="workflow",
    config=Config,
    run=run,
    description=__doc__ or "",
    terminal=True,
    calls=lambda cfg: [cfg.workflow],
)
