"""Engine overhead per node step vs the same graph written by hand in raw LangGraph.

Both run in this process, warm, same work per node (render a template into a variable),
with no checkpointer and with the in-memory checkpointer. Budget (DESIGN.md §8): ours
within 1.5x of raw. Prints JSON.

    python -m bench.engine_overhead [--steps 20] [--runs 400]
"""

from __future__ import annotations

import argparse
import json
import operator
import statistics
import time
import uuid
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from builder.schema import Edge, Node, Workflow
from builder.template import render_value
from runtime.compile import build_graph, start_input
from runtime.context import EventLog, RunContext


def ours_workflow(steps: int) -> Workflow:
    nodes = [Node(id="start", type="start")]
    edges = []
    prev = "start"
    for i in range(steps):
        nid = f"s{i}"
        nodes.append(Node(id=nid, type="set", config={"values": {f"v{i}": "{{ message }}"}}))
        edges.append(Edge(**{"from": prev, "to": nid}))
        prev = nid
    return Workflow(id="bench", name="bench", nodes=nodes, edges=edges)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {**a, **b}


class RawState(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    vars: Annotated[dict[str, Any], _merge]


def raw_graph(steps: int, checkpointer: Any) -> Any:
    g = StateGraph(RawState)

    def start(state: RawState) -> dict[str, Any]:
        return {"vars": {"start": {"message": state["vars"]["message"]}}}

    g.add_node("start", start)
    g.add_edge(START, "start")
    prev = "start"
    for i in range(steps):
        key = f"v{i}"

        def step(state: RawState, key: str = key) -> dict[str, Any]:
            return {"vars": {key: render_value("{{ message }}", state["vars"])}}

        g.add_node(f"s{i}", step)
        g.add_edge(prev, f"s{i}")
        prev = f"s{i}"
    g.add_edge(prev, END)
    return g.compile(checkpointer=checkpointer)


def _time(fn: Any, runs: int) -> dict[str, float]:
    for _ in range(20):
        fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return {"p50_us": statistics.median(samples), "p99_us": samples[int(len(samples) * 0.99) - 1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=400)
    args = ap.parse_args()
    nsteps = args.steps + 1  # + start
    wf = ours_workflow(args.steps)
    out: dict[str, Any] = {"bench": "engine_overhead", "node_steps": nsteps, "runs": args.runs, "modes": {}}
    for mode in ("no_checkpointer", "in_memory_checkpointer"):
        ours = build_graph(wf).compile(checkpointer=InMemorySaver() if mode != "no_checkpointer" else None)
        raw = raw_graph(args.steps, InMemorySaver() if mode != "no_checkpointer" else None)

        def run_ours(ours: Any = ours) -> None:
            cid = uuid.uuid4().hex
            ctx = RunContext(llm=None, router=None, http=None, conversation_id=cid, events=EventLog())  # type: ignore[arg-type]
            ours.invoke(start_input("hello", cid), {"configurable": {"thread_id": cid}}, context=ctx)

        def run_raw(raw: Any = raw) -> None:
            cid = uuid.uuid4().hex
            raw.invoke(
                {"messages": [{"role": "user", "content": "hello"}], "vars": {"message": "hello"}},
                {"configurable": {"thread_id": cid}},
            )

        # interleave to share the machine's noise fairly
        t_raw1, t_ours1 = _time(run_raw, args.runs // 2), _time(run_ours, args.runs // 2)
        t_ours2, t_raw2 = _time(run_ours, args.runs // 2), _time(run_raw, args.runs // 2)
        raw_p50 = (t_raw1["p50_us"] + t_raw2["p50_us"]) / 2
        ours_p50 = (t_ours1["p50_us"] + t_ours2["p50_us"]) / 2
        out["modes"][mode] = {
            "raw_us_per_step": round(raw_p50 / nsteps, 1),
            "ours_us_per_step": round(ours_p50 / nsteps, 1),
            "ratio": round(ours_p50 / raw_p50, 3),
            "budget_ratio": 1.5,
            "within_budget": ours_p50 / raw_p50 <= 1.5,
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
