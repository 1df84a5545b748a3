"""Layered auto-layout for the canvas: top to bottom, one row per longest-path layer.

Deterministic (file order breaks every tie), so laying out the same workflow twice gives
the same YAML, and linear in the size of the graph.
"""

from __future__ import annotations

from builder.graph import to_digraph
from builder.schema import Workflow

DX = 260
DY = 140


def _dag_edges(wf: Workflow) -> dict[str, list[str]]:
    """Successor lists with the back edges of a depth-first search (from start first) removed."""
    g = to_digraph(wf)
    order = sorted(g, key=lambda v: (g.nodes[v]["type"] != "start", g.nodes[v]["index"]))
    succ: dict[str, list[str]] = {v: [] for v in g}
    state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
    for root in order:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(g.successors(root)))]
        while stack:  # iterative: a 2000-node chain must not hit the recursion limit
            v, it = stack[-1]
            w = next(it, None)
            if w is None:
                state[v] = 2
                stack.pop()
            elif state.get(w) != 1:  # an edge to a node on the stack closes a loop: drop it
                succ[v].append(w)
                if w not in state:
                    state[w] = 1
                    stack.append((w, iter(g.successors(w))))
    return succ


def auto_layout(wf: Workflow, *, dx: int = DX, dy: int = DY) -> dict[str, tuple[int, int]]:
    """``{node id: (x, y)}``: y = dy x the longest path from a source, rows centred on x = 0."""
    succ = _dag_edges(wf)
    index = {v: i for i, v in enumerate(succ)}
    indeg = dict.fromkeys(succ, 0)
    for v in succ:
        for w in succ[v]:
            indeg[w] += 1
    layer = dict.fromkeys(succ, 0)
    preds: dict[str, list[str]] = {v: [] for v in succ}
    ready = [v for v in succ if indeg[v] == 0]
    while ready:  # Kahn's order; the longest path is relaxed along it
        v = ready.pop()
        for w in succ[v]:
            layer[w] = max(layer[w], layer[v] + 1)
            preds[w].append(v)
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    rows: dict[int, list[str]] = {}
    for v in succ:
        rows.setdefault(layer[v], []).append(v)
    slot: dict[str, float] = {}
    out: dict[str, tuple[int, int]] = {}
    for depth in sorted(rows):
        # Order a row by its parents' mean position (fewer crossings), then by file order.
        row = sorted(
            rows[depth],
            key=lambda v: (sum(slot[p] for p in preds[v]) / len(preds[v]) if preds[v] else -1.0, index[v]),
        )
        for i, v in enumerate(row):
            slot[v] = i - (len(row) - 1) / 2
            out[v] = (round(slot[v] * dx), depth * dy)
    return out


def with_layout(wf: Workflow) -> Workflow:
    """A copy whose layout has a position for every node: existing ones kept, the missing
    ones laid out automatically (moved right past any taken spot), stale ones dropped."""
    ids = {n.id for n in wf.nodes}
    layout = {k: v for k, v in wf.layout.items() if k in ids}
    taken = set(layout.values())
    auto = auto_layout(wf)
    for n in wf.nodes:
        if n.id in layout:
            continue
        x, y = auto[n.id]
        while (x, y) in taken:
            x += DX
        layout[n.id] = (x, y)
        taken.add((x, y))
    return wf.model_copy(update={"layout": layout})
