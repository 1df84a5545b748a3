"""The floor for bench/chat_load.py: raw RQ + raw LangGraph, no API, no events, no database.

A 5-node LangGraph graph (like research/runtime-baseline.md §1/§4: each node adds one key, the
fourth makes the reply like the offline LLM would), compiled once per worker process. The job is
``bench.support.floor_jobs.turn(text)``; workers are stock ``rq worker -w rq.worker.SimpleWorker``.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

QUEUE = "bench-floor"


class State(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], operator.add]
    vars: Annotated[dict[str, Any], lambda a, b: {**a, **b}]


def _graph() -> Any:
    g = StateGraph(State)

    def start(state: State) -> dict[str, Any]:
        return {"vars": {"message": state["messages"][-1]["content"]}}

    def topic(state: State) -> dict[str, Any]:
        return {"vars": {"topic": state["vars"]["message"]}}

    def customer(state: State) -> dict[str, Any]:
        return {"vars": {"customer": "bench"}}

    def answer(state: State) -> dict[str, Any]:
        return {"messages": [{"role": "assistant", "content": "Hello! How can I help you today?"}]}

    def done(state: State) -> dict[str, Any]:
        return {"vars": {"answered": "yes"}}

    prev = START
    for name, fn in (
        ("start", start),
        ("topic", topic),
        ("customer", customer),
        ("answer", answer),
        ("done", done),
    ):
        g.add_node(name, fn)
        g.add_edge(prev, name)
        prev = name
    g.add_edge(prev, END)
    return g.compile()


GRAPH = _graph()


def turn(text: str) -> str:
    out = GRAPH.invoke({"messages": [{"role": "user", "content": text}], "vars": {}})
    return str(out["messages"][-1]["content"])
