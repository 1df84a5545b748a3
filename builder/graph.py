"""Graph rules over a loaded workflow (networkx) -> coded ``Issue``s with node ids and lines.

Every rule is linear in the size of the graph (a 2000-node workflow validates in tens of
milliseconds): loops are found through strongly connected components, never by listing
cycles, and "is this variable set upstream?" is one pass over the condensation with
bitsets of variable names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from builder.issues import Issue, Severity
from builder.schema import ERROR_OUTPUT, EXHAUSTED_OUTPUT, Workflow
from builder.template import syntax_errors
from builder.yaml_io import Loaded, Path

if TYPE_CHECKING:
    from nodes.base import NodeType

#: Variables every node may read without an upstream node setting them.
BUILTINS = frozenset({"message", "intent", "route", "conversation", "user", "now", "turn"})

Resolver = Callable[[str], Workflow | None]


def to_digraph(wf: Workflow) -> nx.DiGraph:
    """Nodes (first of duplicate ids wins) and the edges between known nodes; each edge
    keeps every ``when`` label drawn between the pair as ``whens``."""
    nodes: dict[str, dict[str, Any]] = {}
    for i, n in enumerate(wf.nodes):
        nodes.setdefault(n.id, {"index": i, "type": n.type, "max_visits": n.max_visits})
    whens: dict[tuple[str, str], list[str | None]] = {}
    for e in wf.edges:
        if e.source in nodes and e.target in nodes:
            whens.setdefault((e.source, e.target), []).append(e.when)
    g = nx.DiGraph()  # bulk adds: per-item add_node/add_edge dominate on big graphs
    g.add_nodes_from(nodes.items())
    g.add_edges_from((s, t, {"whens": w}) for (s, t), w in whens.items())
    return g


def reachable(wf: Workflow, graph: nx.DiGraph | None = None) -> set[str]:
    """Ids reachable from the start node(s), the starts included; empty with no start."""
    g = graph if graph is not None else to_digraph(wf)
    seen: set[str] = set()
    for n in wf.nodes:
        if n.type == "start" and n.id in g and n.id not in seen:
            seen |= nx.descendants(g, n.id) | {n.id}
    return seen


def is_cyclic(g: nx.DiGraph, comp: set[str]) -> bool:
    """Whether a strongly connected component holds a cycle (2+ nodes, or a self-loop)."""
    return len(comp) > 1 or g.has_edge(next(iter(comp)), next(iter(comp)))


def cyclic_components(g: nx.DiGraph) -> Iterator[set[str]]:
    """Strongly connected components that hold a cycle."""
    return (c for c in nx.strongly_connected_components(g) if is_cyclic(g, c))


def components_in_order(g: nx.DiGraph) -> tuple[list[set[str]], list[list[int]]]:
    """Strongly connected components in topological order, and each one's predecessor
    components (Kahn's algorithm over the condensation, without building it)."""
    comps = list(nx.strongly_connected_components(g))
    comp_of = {v: i for i, c in enumerate(comps) for v in c}
    preds: list[set[int]] = [set() for _ in comps]
    succs: list[set[int]] = [set() for _ in comps]
    for u, v in g.edges:
        cu, cv = comp_of[u], comp_of[v]
        if cu != cv:
            preds[cv].add(cu)
            succs[cu].add(cv)
    indeg = [len(p) for p in preds]
    order = [i for i, d in enumerate(indeg) if d == 0]
    for i in order:  # the list grows while it is walked
        for j in succs[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                order.append(j)
    pos = {c: k for k, c in enumerate(order)}
    return [comps[i] for i in order], [sorted(pos[p] for p in preds[i]) for i in order]


@dataclass
class _Ctx:
    wf: Workflow
    loaded: Loaded | None
    registry: dict[str, NodeType]
    resolve: Resolver | None
    issues: list[Issue] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # id -> first node index
    specs: dict[str, NodeType] = field(default_factory=dict)  # nodes of known types
    cfgs: dict[str, BaseModel] = field(default_factory=dict)  # valid configs only

    def add(
        self,
        code: str,
        message: str,
        *,
        node: str | None = None,
        path: Path | None = None,
        severity: Severity = "error",
        hint: str | None = None,
    ) -> None:
        line = col = None
        if self.loaded is not None:
            if path is None and node is not None and node in self.index:
                path = ("nodes", self.index[node])
            if path is not None:
                line, col = self.loaded.position(path)
        self.issues.append(Issue(code, message, severity, node, line, col, hint))


def validate(
    wf: Workflow,
    *,
    loaded: Loaded | None = None,
    registry: dict[str, NodeType] | None = None,
    resolve_workflow: Resolver | None = None,
) -> list[Issue]:
    """All graph rules (DESIGN.md §4): issues grouped by rule, in file order within a rule.

    ``loaded`` adds line/column to each issue; ``resolve_workflow(slug)`` enables the
    subflow checks that need the called workflows (missing, transitive recursion, and the
    variables a subflow sets)."""
    if registry is None:
        from nodes import NODE_TYPES  # lazy: nodes import builder modules

        registry = NODE_TYPES
    ctx = _Ctx(wf, loaded, registry, resolve_workflow)
    _check_nodes(ctx)
    g = to_digraph(wf)
    _check_start(ctx, g)
    _check_edges(ctx)
    _check_flow(ctx, g)
    comps = components_in_order(g)
    _check_loops(ctx, g, comps[0])
    called = _check_subflows(ctx)
    _check_variables(ctx, g, comps, called)
    for key in wf.layout:
        if key not in ctx.index:
            ctx.add(
                "LAYOUT_UNKNOWN_NODE",
                f"layout names '{key}', which is not a node",
                path=("layout", key),
                severity="warning",
                hint="delete the layout line",
            )
    return ctx.issues


def _check_nodes(ctx: _Ctx) -> None:
    for i, n in enumerate(ctx.wf.nodes):
        if n.id in ctx.index:
            ctx.add(
                "DUPLICATE_NODE_ID",
                f"node id '{n.id}' is used twice",
                node=n.id,
                path=("nodes", i, "id"),
                hint="give every node its own id",
            )
            continue
        ctx.index[n.id] = i
        for key_path, text in _strings(n.config, ("nodes", i, "config")):
            for msg in syntax_errors(text):
                ctx.add(
                    "TEMPLATE_SYNTAX",
                    f"node '{n.id}' config.{_dotted(key_path[3:])}: {msg}",
                    node=n.id,
                    path=key_path,
                    hint="write {{ dotted.path }} or ${secret:NAME} / ${config:NAME}",
                )
        spec = ctx.registry.get(n.type)
        if spec is None:
            known = ", ".join(sorted(ctx.registry))
            ctx.add(
                "UNKNOWN_NODE_TYPE",
                f"node '{n.id}' has unknown type '{n.type}' (known: {known})",
                node=n.id,
                path=("nodes", i, "type"),
                hint="use one of the known types",
            )
            continue
        ctx.specs[n.id] = spec
        try:
            ctx.cfgs[n.id] = spec.config.model_validate(n.config)
        except ValidationError as e:
            for err in e.errors():
                loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
                ctx.add(
                    "INVALID_CONFIG",
                    f"node '{n.id}' ({n.type}) config.{_dotted(loc) or '<root>'}: {err['msg']}",
                    node=n.id,
                    path=("nodes", i, "config", *loc),
                    hint="fix the value; the node's form lists the allowed fields",
                )


def _check_start(ctx: _Ctx, g: nx.DiGraph) -> None:
    starts = [n.id for n in ctx.wf.nodes if n.type == "start"]
    if not starts:
        ctx.add(
            "NO_START", "the workflow has no start node", path=("nodes",), hint="add a node with type: start"
        )
    for extra in starts[1:]:
        ctx.add(
            "MULTIPLE_START",
            f"node '{extra}' is a second start node (the first is '{starts[0]}')",
            node=extra,
            hint="keep one start node",
        )
    for s in dict.fromkeys(starts):
        if g.in_degree(s):
            ctx.add(
                "START_HAS_INCOMING",
                f"start node '{s}' has incoming edges ({', '.join(g.predecessors(s))})",
                node=s,
                hint="loop back to the node after start instead",
            )


def _check_edges(ctx: _Ctx) -> None:
    seen: set[tuple[str, str, str | None]] = set()
    for i, e in enumerate(ctx.wf.edges):
        key = (e.source, e.target, e.when)
        missing = [x for x in (e.source, e.target) if x not in ctx.index]
        if missing:
            ctx.add(
                "EDGE_UNKNOWN_NODE",
                f"edge {e.source} -> {e.target} names missing node '{missing[0]}'",
                path=("edges", i),
                hint="fix the id or delete the edge",
            )
        elif key in seen:
            ctx.add(
                "EDGE_DUPLICATE",
                f"edge {e.source} -> {e.target} is listed twice",
                node=e.source,
                path=("edges", i),
                severity="warning",
                hint="delete one of them",
            )
        seen.add(key)
        cfg = ctx.cfgs.get(e.source)
        if e.when is None or cfg is None:
            continue
        outs = _outputs(ctx, e.source, cfg)
        if e.when not in outs:
            ctx.add(
                "UNKNOWN_OUTPUT",
                f"edge {e.source} -> {e.target} uses output '{e.when}', but "
                f"'{e.source}' has " + (f"outputs: {', '.join(outs)}" if outs else "no named outputs"),
                node=e.source,
                path=("edges", i, "when"),
                hint="use one of its outputs or drop 'when'",
            )


def _outputs(ctx: _Ctx, node_id: str, cfg: BaseModel) -> list[str]:
    outs = ctx.specs[node_id].all_outputs(cfg)
    if ctx.wf.nodes[ctx.index[node_id]].max_visits is not None and EXHAUSTED_OUTPUT not in outs:
        outs.append(EXHAUSTED_OUTPUT)
    return outs


def _check_flow(ctx: _Ctx, g: nx.DiGraph) -> None:
    labels: dict[str, set[str | None]] = {}
    for e in ctx.wf.edges:
        labels.setdefault(e.source, set()).add(e.when)
    for node_id, spec in ctx.specs.items():
        have = labels.get(node_id, set())
        cfg = ctx.cfgs.get(node_id)
        named = list(spec.outputs(cfg)) if cfg is not None else []
        uncovered = [o for o in named if o not in (ERROR_OUTPUT, EXHAUSTED_OUTPUT) and o not in have]
        if uncovered and None not in have:
            ctx.add(
                "BRANCH_UNCOVERED",
                f"node '{node_id}' has no edge for output(s) {', '.join(uncovered)} and no default edge",
                node=node_id,
                hint="add an edge per output or one without 'when'",
            )
        if not spec.terminal and not have:
            ctx.add(
                "DEAD_END",
                f"node '{node_id}' ({spec.type}) has no outgoing edge",
                node=node_id,
                severity="warning",
                hint="connect it to a reply, end or the next step",
            )
    if any(n.type == "start" for n in ctx.wf.nodes):
        live = reachable(ctx.wf, g)
        for node_id in ctx.index:
            if node_id not in live:
                ctx.add(
                    "UNREACHABLE_NODE",
                    f"node '{node_id}' cannot be reached from start",
                    node=node_id,
                    hint="connect it or delete it",
                )
    incoming: dict[str, int] = {}
    for e in ctx.wf.edges:
        incoming[e.target] = incoming.get(e.target, 0) + 1
    for node_id, i in ctx.index.items():
        if ctx.wf.nodes[i].join == "all" and incoming.get(node_id, 0) < 2:
            ctx.add(
                "JOIN_SINGLE_INPUT",
                f"node '{node_id}' waits for all inputs (join: all) but has "
                f"{incoming.get(node_id, 0)} incoming edge(s)",
                node=node_id,
                path=("nodes", i, "join"),
                severity="warning",
                hint="remove join: all",
            )


def _check_loops(ctx: _Ctx, g: nx.DiGraph, comps: list[set[str]]) -> None:
    # A cycle avoiding every max_visits node exists iff the graph without them has one;
    # only components that hold a cycle need that second look.
    for big in comps:
        if not is_cyclic(g, big):
            continue
        free = g.subgraph([v for v in big if g.nodes[v]["max_visits"] is None])
        for comp in cyclic_components(free):
            members = sorted(comp, key=ctx.index.__getitem__)
            ctx.add(
                "LOOP_UNBOUNDED",
                f"loop through {', '.join(members)} has no node with max_visits",
                node=members[0],
                hint=f"set max_visits on '{members[0]}' and give it an 'exhausted' edge",
            )


def _calls(ctx: _Ctx, wf: Workflow) -> list[tuple[str, str]]:
    """``(node id, called slug)`` for every subflow-like node with a valid config."""
    out = []
    for n in wf.nodes:
        spec = ctx.registry.get(n.type)
        if spec is None:
            continue
        cfg = ctx.cfgs.get(n.id) if wf is ctx.wf else _try_config(spec, n.config)
        if cfg is not None:
            out += [(n.id, name) for name in spec.calls(cfg)]
    return out


def _try_config(spec: NodeType, config: dict[str, Any]) -> BaseModel | None:
    try:
        return spec.config.model_validate(config)
    except ValidationError:
        return None


def _check_subflows(ctx: _Ctx) -> dict[str, Workflow]:
    """SUBFLOW_MISSING / SUBFLOW_RECURSION; returns node id -> the workflow it calls."""
    root = ctx.wf.id
    calls = _calls(ctx, ctx.wf)
    called: dict[str, Workflow] = {}
    cg = nx.DiGraph()
    cg.add_edges_from((root, name) for _, name in calls)
    if ctx.resolve is not None:
        resolved: dict[str, Workflow | None] = {root: ctx.wf}
        todo = [name for _, name in calls]
        while todo:  # walk the call graph, resolving each workflow once
            name = todo.pop()
            if name in resolved:
                continue
            sub = resolved[name] = ctx.resolve(name)
            if sub is not None:
                for _, nxt in _calls(ctx, sub):
                    cg.add_edge(name, nxt)
                    todo.append(nxt)
        for node_id, name in calls:
            sub = resolved.get(name)
            if sub is None:
                ctx.add(
                    "SUBFLOW_MISSING",
                    f"node '{node_id}' calls workflow '{name}', which does not exist",
                    node=node_id,
                    hint="create or publish it, or fix the name",
                )
            elif name != root:
                called[node_id] = sub
    cycles = list(cyclic_components(cg))
    looping = set().union(*cycles)
    with_root = next((c for c in cycles if root in c), set())
    for node_id, name in calls:
        if name == root or name in looping or looping & nx.descendants(cg, name):
            if name == root:
                how = "its own workflow"
            elif name in with_root:
                how = f"'{name}', which calls back into '{root}'"
            else:
                how = f"'{name}', which leads into a subflow cycle"
            ctx.add(
                "SUBFLOW_RECURSION",
                f"node '{node_id}' calls {how}",
                node=node_id,
                hint="break the cycle; loop inside one workflow with max_visits instead",
            )
    return called


def _check_variables(
    ctx: _Ctx, g: nx.DiGraph, comps: tuple[list[set[str]], list[list[int]]], called: dict[str, Workflow]
) -> None:
    bits: dict[str, int] = {}

    def mask(names: set[str]) -> int:
        m = 0
        for name in names:
            m |= 1 << bits.setdefault(name, len(bits))
        return m

    gen: dict[str, int] = {}
    for node_id in ctx.index:
        names = {node_id}
        cfg = ctx.cfgs.get(node_id)
        if cfg is not None:
            names |= ctx.specs[node_id].sets(cfg)
        sub = called.get(node_id)
        if sub is not None:
            for n in sub.nodes:
                names.add(n.id)
                spec = ctx.registry.get(n.type)
                sub_cfg = _try_config(spec, n.config) if spec else None
                if spec and sub_cfg is not None:
                    names |= spec.sets(sub_cfg)
        gen[node_id] = mask(names)
    # avail(v) = union of gen over v's ancestors: one pass over the DAG of components.
    out: list[int] = []
    avail: dict[str, int] = {}
    for members, preds in zip(*comps, strict=True):
        into = 0
        for p in preds:
            into |= out[p]
        own = 0
        for m in members:
            own |= gen[m]
        out.append(into | own)
        mine = into | own if is_cyclic(g, members) else into  # in a loop a node is its own ancestor
        for m in members:
            avail[m] = mine
    for node_id, cfg in ctx.cfgs.items():
        missing = []
        for path in ctx.specs[node_id].reads(cfg):
            root = path.split(".", 1)[0]
            if root in BUILTINS or root in missing:
                continue
            bit = bits.get(root)
            if bit is None or not (avail[node_id] >> bit) & 1:
                missing.append(root)
                i = ctx.index[node_id]
                where = next(
                    (p for p, s in _strings(ctx.wf.nodes[i].config, ("nodes", i, "config")) if path in s),
                    None,
                )
                ctx.add(
                    "UNDEFINED_VARIABLE",
                    f"node '{node_id}' reads '{path}', but no node before it sets '{root}'",
                    node=node_id,
                    path=where,
                    hint=f"set '{root}' upstream (an extract or set node) or fix the name",
                )


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)
