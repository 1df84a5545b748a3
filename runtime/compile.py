"""Workflow -> LangGraph ``StateGraph`` -> compiled graph. Pure: no I/O happens here.

* Every node becomes a wrapped function (events, policy: timeout/retries/default, loop
  bounds) around its type's ``run``; a ``subflow`` node becomes the called workflow's own
  compiled graph, nested as a subgraph (same state schema, so interrupts and checkpoints
  work across the boundary).
* Routing: each node records the output label it took; a conditional edge sends the flow
  to the edges labelled with it, else to the unlabelled (default) edges, else to END.
  Several default edges fan out in parallel; a node with ``join: all`` waits for all of
  its predecessors (LangGraph waiting edge).
"""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from builder.schema import ERROR_OUTPUT, EXHAUSTED_OUTPUT, Node, Workflow
from builder.yaml_io import dump
from nodes import NODE_TYPES
from nodes.base import NodeInput, NodeResult, NodeType
from runtime.context import RunContext
from runtime.state import RESET, FlowState

Resolver = Callable[[str], Workflow | None]
SUBFLOW = "subflow"


class CompileError(ValueError):
    """The workflow cannot be compiled (it would not pass validation)."""


class NodeFailed(RuntimeError):
    def __init__(self, node_id: str, error: BaseException) -> None:
        self.node_id = node_id
        self.error = error
        super().__init__(f"node '{node_id}' failed: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class _Wiring:
    by_label: dict[str, list[str]]
    default: list[str]
    has_join_successor: bool


def _message_id(ctx: RunContext, node_id: str, n: int = 0) -> str:
    return f"{ctx.turn_id}:{node_id}:{n}"


_NODE_HINTS: dict[str, Any] = {"state": FlowState, "runtime": Runtime[RunContext], "return": dict}
_ROUTE_HINTS: dict[str, Any] = {"state": FlowState, "return": Any}


class _NodeRunner:
    """Runs one workflow node: events, loop bound, policy (timeout, retries, default), routing label."""

    def __init__(self, node: Node, spec: NodeType, cfg: Any, wiring: _Wiring, prefix: str) -> None:
        self.node, self.spec, self.cfg = node, spec, cfg
        self.policy = node.policy
        self.attempts = 1 + (node.policy.retries if node.policy else 0)
        self.has_error_edge = ERROR_OUTPUT in wiring.by_label
        self.has_exhausted_edge = EXHAUSTED_OUTPUT in wiring.by_label
        self.label = prefix + node.id

    def run(self, state: FlowState, base: RunContext) -> dict[str, Any]:
        node, policy, label = self.node, self.policy, self.label
        visits = (state.get("visits") or {}).get(label, 0) + 1
        ctx = replace(base, node_id=label, deadline=None)
        update: dict[str, Any] = {"visits": {label: visits}}
        if node.max_visits is not None and visits > node.max_visits:
            ctx.emit("loop_exhausted", visits=visits, max_visits=node.max_visits)
            if not self.has_exhausted_edge:
                raise NodeFailed(label, RuntimeError(f"loop bound of {node.max_visits} visits reached"))
            update["outputs"] = {label: EXHAUSTED_OUTPUT}
            return update
        inp = NodeInput(label, dict(state.get("vars") or {}), list(state.get("messages") or []))
        ctx.emit("node_started", node_type=node.type)
        started = time.perf_counter()
        result: NodeResult | None = None
        error: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            if policy and policy.timeout_s:
                ctx.deadline = time.monotonic() + policy.timeout_s
            try:
                result = self.spec.run(self.cfg, inp, ctx)
                if ctx.deadline is not None and time.monotonic() > ctx.deadline:
                    raise TimeoutError(f"took longer than {policy.timeout_s if policy else 0}s")
                error = None
                break
            except GraphBubbleUp:
                raise  # an interrupt (the node asks the user): not a failure
            except Exception as exc:
                error = exc
                ctx.emit("node_error", error=type(exc).__name__, message=str(exc)[:500], attempt=attempt)
                if attempt < self.attempts and policy:
                    delay = policy.backoff_s * (2 ** (attempt - 1))
                    time.sleep(delay + random.uniform(0, delay / 2))
        duration_ms = (time.perf_counter() - started) * 1000
        if error is not None:
            failure = {"error": {"type": type(error).__name__, "message": str(error)[:500]}}
            if self.has_error_edge:
                result = NodeResult(value=failure, output=ERROR_OUTPUT)
            elif policy and policy.default is not None:
                result = NodeResult(value=policy.default)
            else:
                ctx.emit("node_finished", output="failed", duration_ms=round(duration_ms, 3))
                raise NodeFailed(label, error)
        assert result is not None
        update["vars"] = {**result.set, node.id: result.value}
        update["outputs"] = {label: result.output}
        if result.reply:
            msg = {"id": _message_id(ctx, label), "role": "assistant", "content": result.reply}
            update["messages"] = [msg]
            ctx.emit("reply", text=result.reply)
        ctx.emit("node_finished", output=result.output or "default", duration_ms=round(duration_ms, 3))
        return update


def _make_node(node: Node, spec: NodeType, cfg: Any, wiring: _Wiring, prefix: str) -> Callable[..., dict]:
    runner = _NodeRunner(node, spec, cfg, wiring, prefix).run

    # Kept tiny on purpose: LangGraph disassembles each node function when compiling (to find
    # subgraphs), so a big closure here made compiling a 500-node workflow take seconds.
    def fn(state: FlowState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        return runner(state, runtime.context)

    fn.__name__ = f"node_{node.id}"
    fn.__annotations__ = _NODE_HINTS  # real objects: LangGraph's get_type_hints needn't eval strings
    return fn


def _router(node_id: str, wiring: _Wiring) -> Callable[[FlowState], list[str] | str]:
    def route(state: FlowState) -> list[str] | str:
        label = (state.get("outputs") or {}).get(node_id)
        targets = wiring.by_label.get(label, []) if label else []
        if not targets:
            targets = wiring.default
        if targets:
            return targets
        return [] if wiring.has_join_successor else END

    route.__annotations__ = _ROUTE_HINTS
    return route


def _subflow_entry(node: Node, prefix: str) -> Callable[..., dict]:
    def enter(state: FlowState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        runtime.context.events.emit(
            "subflow_started", node=prefix + node.id, workflow=node.config.get("workflow")
        )
        return {}

    return enter


def build_graph(
    wf: Workflow,
    *,
    resolve: Resolver | None = None,
    registry: dict[str, NodeType] | None = None,
    prefix: str = "",
    _stack: tuple[str, ...] = (),
) -> StateGraph:
    registry = registry or NODE_TYPES
    if wf.id in _stack:
        raise CompileError(f"subflow recursion: {' -> '.join((*_stack, wf.id))}")
    entry = wf.entry()
    if entry is None:
        raise CompileError(f"workflow '{wf.id}' has no start node")
    graph = StateGraph(FlowState, context_schema=RunContext)
    out_edges: dict[str, list] = {n.id: [] for n in wf.nodes}
    in_edges: dict[str, list] = {n.id: [] for n in wf.nodes}
    for e in wf.edges:
        if e.source not in out_edges or e.target not in in_edges:
            raise CompileError(f"edge {e.source} -> {e.target} names a missing node")
        out_edges[e.source].append(e)
        in_edges[e.target].append(e)
    join_all = {n.id for n in wf.nodes if n.join == "all" and len(in_edges[n.id]) > 1}
    subflows = _subflow_ids(wf)

    def entry_name(node_id: str) -> str:
        return f"{node_id}__enter" if node_id in subflows else node_id

    for node in wf.nodes:
        spec = registry.get(node.type)
        if spec is None:
            raise CompileError(f"node '{node.id}': unknown type '{node.type}'")
        by_label: dict[str, list[str]] = {}
        default: list[str] = []
        for e in out_edges[node.id]:
            if e.target in join_all:
                continue
            (by_label.setdefault(e.when, []) if e.when else default).append(e.target)
        wiring = _Wiring(by_label, default, any(e.target in join_all for e in out_edges[node.id]))
        if node.type == SUBFLOW:
            slug = str(node.config.get("workflow", ""))
            sub = resolve(slug) if resolve else None
            if sub is None:
                raise CompileError(f"node '{node.id}': subflow '{slug}' not found")
            sub_graph = build_graph(
                sub, resolve=resolve, registry=registry, prefix=f"{prefix}{sub.id}/", _stack=(*_stack, wf.id)
            ).compile()
            graph.add_node(f"{node.id}__enter", _subflow_entry(node, prefix))
            graph.add_node(node.id, sub_graph)
            graph.add_edge(f"{node.id}__enter", node.id)
        else:
            try:
                cfg = spec.config.model_validate(node.config)
            except Exception as exc:
                raise CompileError(f"node '{node.id}': invalid config: {exc}") from None
            # An explicit input schema spares LangGraph re-reading FlowState's hints for every node.
            graph.add_node(node.id, _make_node(node, spec, cfg, wiring, prefix), input_schema=FlowState)
        if not by_label:
            # Only unlabelled edges: plain edges are cheaper for LangGraph than a branch
            # (no routing function per step), and the path is the same for every output.
            for t in dict.fromkeys(default):
                graph.add_edge(node.id, entry_name(t))
            if not default and not wiring.has_join_successor:
                graph.add_edge(node.id, END)
            continue
        targets = sorted({t for ts in by_label.values() for t in ts} | set(default))
        path_map = [entry_name(t) for t in targets]
        route = _router(prefix + node.id, wiring)
        if any(t in subflows for t in targets):
            route = _renaming(route, entry_name)
        graph.add_conditional_edges(node.id, route, [*path_map, END])
    for target in join_all:
        graph.add_edge([e.source for e in in_edges[target]], entry_name(target))
    graph.add_edge(START, entry.id)
    return graph


def _subflow_ids(wf: Workflow) -> frozenset[str]:
    return frozenset(n.id for n in wf.nodes if n.type == SUBFLOW)


def _renaming(
    route: Callable[[FlowState], list[str] | str], entry_name: Callable[[str], str]
) -> Callable[[FlowState], list[str] | str]:
    """Routes into a subflow node go to its entry node (which emits ``subflow_started``)."""

    def renamed(state: FlowState) -> list[str] | str:
        out = route(state)
        if isinstance(out, str):
            return entry_name(out) if out != END else out
        return [entry_name(t) for t in out]

    renamed.__annotations__ = _ROUTE_HINTS
    return renamed


def start_input(text: str, message_id: str) -> dict[str, Any]:
    """State update that starts a new pass through the flow at ``start``."""
    return {
        "messages": [{"id": message_id, "role": "user", "content": text}],
        "vars": {"message": text},
        "visits": {RESET: True},
    }


class GraphCache:
    """Compiled graphs keyed by the content hash of the workflow and every subflow it uses."""

    def __init__(self, size: int = 256, registry: dict[str, NodeType] | None = None) -> None:
        self.size = size
        self.registry = registry
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(
        self, wf: Workflow, *, resolve: Resolver | None, checkpointer: Any, key: str | None = None
    ) -> Any:
        """``key``: the caller's own identity of this exact graph (e.g. workflow and subflow
        version ids), which spares hashing the YAML on every call; by default the content hash."""
        key = key or _graph_key(wf, resolve)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        compiled = build_graph(wf, resolve=resolve, registry=self.registry).compile(checkpointer=checkpointer)
        with self._lock:
            self.misses += 1
            self._items[key] = compiled
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled


def _graph_key(wf: Workflow, resolve: Resolver | None, _seen: frozenset[str] = frozenset()) -> str:
    import hashlib

    h = hashlib.sha256(dump(wf).encode())
    for node in wf.nodes:
        if node.type == SUBFLOW and resolve and node.config.get("workflow") not in _seen:
            sub = resolve(str(node.config.get("workflow")))
            if sub is not None:
                h.update(_graph_key(sub, resolve, _seen | {wf.id}).encode())
    return h.hexdigest()
