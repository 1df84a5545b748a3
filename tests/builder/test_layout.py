"""builder.layout: layered, deterministic, fills only what is missing."""

from __future__ import annotations

from itertools import pairwise

from builder.layout import auto_layout, with_layout
from builder.schema import Edge, Node, Workflow


def wf(
    ids: list[str], edges: list[tuple[str, str]], layout: dict[str, tuple[int, int]] | None = None
) -> Workflow:
    nodes = [Node(id=i, type="start" if i == "start" else "reply") for i in ids]
    return Workflow(
        id="w",
        name="w",
        nodes=nodes,
        edges=[Edge(source=a, target=b) for a, b in edges],
        layout=layout or {},
    )


def test_a_chain_is_one_column():
    pos = auto_layout(wf(["start", "a", "b"], [("start", "a"), ("a", "b")]))
    assert pos == {"start": (0, 0), "a": (0, 140), "b": (0, 280)}


def test_spacing_is_configurable():
    pos = auto_layout(wf(["start", "a", "b"], [("start", "a"), ("start", "b")]), dx=100, dy=50)
    assert pos == {"start": (0, 0), "a": (-50, 50), "b": (50, 50)}


def test_a_layer_is_the_longest_path_from_start():
    w = wf(["start", "a", "b", "c"], [("start", "a"), ("a", "b"), ("b", "c"), ("start", "c")])
    assert {k: y for k, (_, y) in auto_layout(w).items()} == {"start": 0, "a": 140, "b": 280, "c": 420}


def test_a_diamond_spreads_its_branches_and_rejoins_below():
    w = wf(["start", "l", "r", "end"], [("start", "l"), ("start", "r"), ("l", "end"), ("r", "end")])
    assert auto_layout(w) == {"start": (0, 0), "l": (-130, 140), "r": (130, 140), "end": (0, 280)}


def test_back_edges_are_ignored_so_loops_still_get_layers():
    w = wf(
        ["start", "ask", "check", "done"],
        [("start", "ask"), ("ask", "check"), ("check", "ask"), ("check", "done")],
    )
    pos = auto_layout(w)
    assert [pos[k][1] for k in ("start", "ask", "check", "done")] == [0, 140, 280, 420]
    selfloop = wf(["start", "a"], [("start", "a"), ("a", "a")])
    assert auto_layout(selfloop) == {"start": (0, 0), "a": (0, 140)}


def test_rows_follow_their_parents_to_avoid_crossings():
    # File order says x2 before x1, but x1's parent sits left of x2's parent.
    w = wf(
        ["start", "p1", "p2", "x2", "x1"],
        [("start", "p1"), ("start", "p2"), ("p1", "x1"), ("p2", "x2")],
    )
    pos = auto_layout(w)
    assert pos["p1"][0] < pos["p2"][0]
    assert pos["x1"][0] < pos["x2"][0]


def test_every_node_gets_a_distinct_spot_and_the_result_is_deterministic():
    ids = ["start", "a", "b", "c", "lost", "lost2"]
    w = wf(ids, [("start", "a"), ("start", "b"), ("a", "c"), ("b", "c"), ("lost", "lost2")])
    pos = auto_layout(w)
    assert set(pos) == set(ids)
    assert len(set(pos.values())) == len(ids)
    assert auto_layout(w) == pos
    assert all(isinstance(v, int) for xy in pos.values() for v in xy)


def test_a_long_chain_does_not_recurse():
    ids = ["start"] + [f"n{i}" for i in range(3000)]
    pos = auto_layout(wf(ids, list(pairwise(ids))))
    assert pos["n2999"] == (0, 3000 * 140)


def test_with_layout_keeps_fills_and_drops():
    w = wf(
        ["start", "a", "b"],
        [("start", "a"), ("a", "b")],
        layout={"gone": (9, 9), "a": (500, 500), "start": (0, 0)},
    )
    out = with_layout(w)
    assert out.layout == {"a": (500, 500), "start": (0, 0), "b": (0, 280)}
    assert list(out.layout) == ["a", "start", "b"]  # existing lines stay where they were in the file
    assert w.layout["gone"] == (9, 9)  # the input is not changed


def test_with_layout_moves_a_new_node_off_a_taken_spot():
    w = wf(["start", "a", "b"], [("start", "a"), ("a", "b")], layout={"start": (0, 0), "a": (0, 280)})
    out = with_layout(w)
    assert out.layout["b"] == (260, 280)
    assert with_layout(out) == out  # nothing left to fill
