"""builder.graph: one test per issue code (it fires, and it stays quiet when the flow is right)."""

from __future__ import annotations

import textwrap
from typing import Any

import networkx as nx
import pytest

from builder.conditions import Condition, paths
from builder.graph import BUILTINS, reachable, to_digraph, validate
from builder.issues import Issue
from builder.schema import Edge, Node, Workflow
from builder.yaml_io import load
from nodes import NODE_TYPES
from nodes.base import NodeConfig, NodeResult, NodeType


def _run(cfg: Any, inp: Any, ctx: Any) -> NodeResult:
    return NodeResult()


class BranchConfig(NodeConfig):
    routes: list[str] = ["a", "b"]


class ToolConfig(NodeConfig):
    url: str = "https://example.test/"


class SetConfig(NodeConfig):
    values: dict[str, Any] = {}


class CallConfig(NodeConfig):
    workflow: str


class CheckConfig(NodeConfig):
    cond: Condition


def _type(name: str, config: type[NodeConfig], **kw: Any) -> NodeType:
    return NodeType(type=name, title=name, group="test", icon="x", config=config, run=_run, **kw)


#: A registry of small stand-ins for the real node types, one per rule the graph checks.
REG: dict[str, NodeType] = {
    "start": NODE_TYPES["start"],
    "reply": NODE_TYPES["reply"],
    "end": NODE_TYPES["end"],
    "branch": _type("branch", BranchConfig, outputs=lambda c: list(c.routes)),
    "tool": _type("tool", ToolConfig, can_fail=True),
    "set": _type("set", SetConfig, sets=lambda c: set(c.values)),
    "call": _type("call", CallConfig, calls=lambda c: [c.workflow]),
    "check": _type("check", CheckConfig, outputs=lambda c: ["yes"], reads=lambda c: paths(c.cond)),
}


def wf(nodes: list[Any], edges: list[Any] = (), wid: str = "main", **kw: Any) -> Workflow:
    """nodes: ``(id, type)`` or ``(id, type, config)`` or ``Node``; edges: ``(a, b)`` or ``(a, b, when)``."""
    ns = [
        n if isinstance(n, Node) else Node(id=n[0], type=n[1], config=n[2] if len(n) > 2 else {})
        for n in nodes
    ]
    es = [Edge(source=e[0], target=e[1], when=e[2] if len(e) > 2 else None) for e in edges]
    return Workflow(id=wid, name=wid, nodes=ns, edges=es, **kw)


def issues(w: Workflow, **kw: Any) -> list[Issue]:
    kw.setdefault("registry", REG)
    return validate(w, **kw)


def codes(w: Workflow, **kw: Any) -> list[str]:
    return [i.code for i in issues(w, **kw)]


def only(w: Workflow, code: str, **kw: Any) -> list[Issue]:
    return [i for i in issues(w, **kw) if i.code == code]


def tpl(path: str) -> str:
    return "{{ " + path + " }}"


HELLO = {"text": "Hello"}
#: start -> reply: the smallest workflow with no issues at all.
GOOD = wf([("start", "start"), ("hi", "reply", HELLO)], [("start", "hi")])


def test_good_workflow_has_no_issues_with_test_and_real_registry():
    assert issues(GOOD) == []
    assert validate(GOOD) == []  # the default registry is nodes.NODE_TYPES


# ------------------------------------------------------------------ start


def test_no_start():
    assert "NO_START" in codes(wf([("hi", "reply", HELLO)]))
    assert "NO_START" not in codes(GOOD)


def test_multiple_start():
    w = wf([("s1", "start"), ("s2", "start"), ("hi", "reply", HELLO)], [("s1", "hi"), ("s2", "hi")])
    [issue] = only(w, "MULTIPLE_START")
    assert issue.node_id == "s2" and issue.severity == "error"
    assert "MULTIPLE_START" not in codes(GOOD)


def test_start_has_incoming():
    w = wf([("start", "start"), ("t", "tool")], [("start", "t"), ("t", "start")])
    [issue] = only(w, "START_HAS_INCOMING")
    assert issue.node_id == "start"
    assert "START_HAS_INCOMING" not in codes(GOOD)


# ------------------------------------------------------------------ nodes


def test_duplicate_node_id():
    w = wf([("start", "start"), ("hi", "reply", HELLO), ("hi", "reply", HELLO)], [("start", "hi")])
    [issue] = only(w, "DUPLICATE_NODE_ID")
    assert issue.node_id == "hi"
    assert "DUPLICATE_NODE_ID" not in codes(GOOD)


def test_unknown_node_type_lists_known_types():
    w = wf([("start", "start"), ("x", "teleport")], [("start", "x")])
    [issue] = only(w, "UNKNOWN_NODE_TYPE")
    assert issue.node_id == "x" and "teleport" in issue.message
    for known in REG:
        assert known in issue.message
    assert "UNKNOWN_NODE_TYPE" not in codes(GOOD)


def test_invalid_config_carries_pydantic_message_and_key_path():
    w = wf([("start", "start"), ("hi", "reply", {"text": ""}), ("c", "call", {"workflow": 5, "typo": 1})])
    found = only(w, "INVALID_CONFIG")
    by_node = {(i.node_id, i.message.split(":")[0]) for i in found}
    assert ("hi", "node 'hi' (reply) config.text") in by_node
    assert ("c", "node 'c' (call) config.workflow") in by_node
    assert ("c", "node 'c' (call) config.typo") in by_node
    assert any("at least 1 character" in i.message for i in found)  # pydantic's own words
    assert "INVALID_CONFIG" not in codes(GOOD)


def test_invalid_config_with_the_real_registry():
    w = wf([("start", "start"), ("hi", "reply", {})], [("start", "hi")])
    [issue] = [i for i in validate(w) if i.code == "INVALID_CONFIG"]
    assert "config.text" in issue.message and "Field required" in issue.message


# ------------------------------------------------------------------ edges


def test_edge_unknown_node():
    w = wf([("start", "start"), ("hi", "reply", HELLO)], [("start", "hi"), ("hi", "ghost")])
    [issue] = only(w, "EDGE_UNKNOWN_NODE")
    assert "ghost" in issue.message
    assert "EDGE_UNKNOWN_NODE" not in codes(GOOD)


def test_edge_duplicate_is_a_warning():
    w = wf([("start", "start"), ("hi", "reply", HELLO)], [("start", "hi"), ("start", "hi")])
    [issue] = only(w, "EDGE_DUPLICATE")
    assert issue.severity == "warning"
    different_labels = wf(
        [("start", "start"), ("b", "branch"), ("hi", "reply", HELLO)],
        [("start", "b"), ("b", "hi", "a"), ("b", "hi", "b")],
    )
    assert "EDGE_DUPLICATE" not in codes(different_labels)


def test_unknown_output():
    base = [("start", "start"), ("b", "branch"), ("t", "tool"), ("hi", "reply", HELLO)]
    w = wf(base, [("start", "b"), ("b", "hi", "c"), ("b", "t"), ("t", "hi"), ("hi", "t", "error")])
    found = only(w, "UNKNOWN_OUTPUT")
    assert [i.node_id for i in found] == ["b", "hi"]  # 'c' is no branch route; a reply cannot fail
    assert "a, b" in found[0].message
    ok = wf(base, [("start", "b"), ("b", "hi", "a"), ("b", "t", "b"), ("t", "hi", "error"), ("t", "hi")])
    assert "UNKNOWN_OUTPUT" not in codes(ok)


def test_exhausted_output_needs_max_visits():
    def build(max_visits: int | None) -> Workflow:
        t = Node(id="t", type="tool", max_visits=max_visits)
        return wf(
            [("start", "start"), t, ("hi", "reply", HELLO)],
            [("start", "t"), ("t", "t"), ("t", "hi", "exhausted")],
        )

    assert "UNKNOWN_OUTPUT" in codes(build(None))
    assert "UNKNOWN_OUTPUT" not in codes(build(3))


# ------------------------------------------------------------------ flow


def test_branch_uncovered():
    base = [("start", "start"), ("b", "branch"), ("hi", "reply", HELLO)]
    [issue] = only(wf(base, [("start", "b"), ("b", "hi", "a")]), "BRANCH_UNCOVERED")
    assert issue.node_id == "b" and issue.severity == "error" and "b" in issue.message.split("output(s)")[1]
    assert "BRANCH_UNCOVERED" not in codes(wf(base, [("start", "b"), ("b", "hi", "a"), ("b", "hi", "b")]))
    assert "BRANCH_UNCOVERED" not in codes(wf(base, [("start", "b"), ("b", "hi", "a"), ("b", "hi")]))
    # 'error' (and 'exhausted') never need an edge: a failure without one uses the policy.
    tool = wf([("start", "start"), ("t", "tool"), ("hi", "reply", HELLO)], [("start", "t"), ("t", "hi")])
    assert codes(tool) == []


def test_unreachable_node_is_an_error():
    w = wf([("start", "start"), ("hi", "reply", HELLO), ("lost", "reply", HELLO)], [("start", "hi")])
    [issue] = only(w, "UNREACHABLE_NODE")
    assert issue.node_id == "lost" and issue.severity == "error"
    assert "UNREACHABLE_NODE" not in codes(GOOD)


def test_dead_end_is_a_warning_for_non_terminal_nodes_only():
    w = wf([("start", "start"), ("t", "tool")], [("start", "t")])
    [issue] = only(w, "DEAD_END")
    assert issue.node_id == "t" and issue.severity == "warning"
    assert "DEAD_END" not in codes(GOOD)  # a reply may end the flow
    ends = wf([("start", "start"), ("t", "tool"), ("e", "end")], [("start", "t"), ("t", "e")])
    assert codes(ends) == []


def test_join_single_input():
    def build(extra_edge: bool) -> Workflow:
        j = Node(id="j", type="reply", config=HELLO, join="all")
        edges = [("start", "b"), ("b", "j", "a"), ("b", "t", "b"), ("t", "j")]
        return wf(
            [("start", "start"), ("b", "branch"), ("t", "tool"), j],
            edges if extra_edge else [("start", "b"), ("b", "j")],
        )

    [issue] = only(build(False), "JOIN_SINGLE_INPUT")
    assert issue.node_id == "j" and issue.severity == "warning"
    assert "JOIN_SINGLE_INPUT" not in codes(build(True))


# ------------------------------------------------------------------ loops


def _loop(max_visits: dict[str, int], extra: list[tuple[str, str]] = ()) -> Workflow:
    ids = ["a", "b", "c"]
    nodes = [Node(id="start", type="start")]
    nodes += [Node(id=i, type="tool", max_visits=max_visits.get(i)) for i in ids]
    nodes.append(Node(id="done", type="end"))
    return wf(nodes, [("start", "a"), ("a", "b"), ("b", "a"), ("b", "done"), *extra])


def test_loop_unbounded():
    [issue] = only(_loop({}), "LOOP_UNBOUNDED")
    assert issue.node_id == "a" and "a, b" in issue.message and issue.severity == "error"
    assert "LOOP_UNBOUNDED" not in codes(_loop({"b": 3}))


def test_self_loop_unbounded():
    w = wf([("start", "start"), ("t", "tool"), ("e", "end")], [("start", "t"), ("t", "t"), ("t", "e")])
    [issue] = only(w, "LOOP_UNBOUNDED")
    assert issue.node_id == "t"


def test_a_bounded_node_does_not_cover_another_cycle_in_the_same_component():
    # a<->b is bounded at a; b<->c is a second cycle in the same component, bounded by nothing.
    w = _loop({"a": 2}, [("b", "c"), ("c", "b")])
    [issue] = only(w, "LOOP_UNBOUNDED")
    assert "b, c" in issue.message
    assert "LOOP_UNBOUNDED" not in codes(_loop({"a": 2, "c": 2}, [("b", "c"), ("c", "b")]))


# ------------------------------------------------------------------ variables


def test_undefined_variable():
    def build(values: dict[str, Any], text: str) -> Workflow:
        return wf(
            [("start", "start"), ("s", "set", {"values": values}), ("hi", "reply", {"text": text})],
            [("start", "s"), ("s", "hi")],
        )

    [issue] = only(build({}, "Order {{ order_id.number }}"), "UNDEFINED_VARIABLE")
    assert issue.node_id == "hi" and "order_id.number" in issue.message and "'order_id'" in issue.message
    assert codes(build({"order_id": 1}, "Order {{ order_id.number }}")) == []
    assert codes(build({}, "{{ s.values }} {{ start.message }}")) == []  # every node sets its own id
    builtin_text = " ".join(tpl(b) for b in sorted(BUILTINS))
    assert codes(build({}, builtin_text)) == []


def test_variable_set_only_downstream_or_on_a_sibling_branch_is_undefined():
    w = wf(
        [
            ("start", "start"),
            ("b", "branch"),
            ("left", "set", {"values": {"x": 1}}),
            ("right", "reply", {"text": "{{ x }}"}),
            ("after", "set", {"values": {"y": 1}}),
            ("last", "reply", {"text": "{{ y }}"}),
        ],
        [("start", "b"), ("b", "left", "a"), ("b", "right", "b"), ("left", "last")],
    )
    found = {i.node_id: i.message for i in only(w, "UNDEFINED_VARIABLE")}
    assert set(found) == {"right", "last"}


def test_variables_in_a_loop_are_set_by_nodes_later_in_the_loop():
    check = Node(
        id="ask", type="check", config={"cond": {"left": "count", "op": "gt", "right": 2}}, max_visits=5
    )
    w = wf(
        [("start", "start"), check, ("inc", "set", {"values": {"count": 1}}), ("e", "end")],
        [("start", "ask"), ("ask", "e", "yes"), ("ask", "inc"), ("inc", "ask"), ("ask", "e", "exhausted")],
    )
    assert "UNDEFINED_VARIABLE" not in codes(w)
    no_loop = wf(
        [("start", "start"), ("ask", "check", check.config), ("inc", "set", {"values": {"count": 1}})],
        [("start", "ask"), ("ask", "inc", "yes"), ("ask", "inc")],
    )
    assert "UNDEFINED_VARIABLE" in codes(no_loop)


def test_variables_set_inside_a_called_subflow_count_as_set():
    sub = wf(
        [("start", "start"), ("collect", "set", {"values": {"email": ""}})],
        [("start", "collect")],
        wid="lead",
    )
    main = wf(
        [
            ("start", "start"),
            ("c", "call", {"workflow": "lead"}),
            ("hi", "reply", {"text": "{{ email }} {{ collect }}"}),
        ],
        [("start", "c"), ("c", "hi")],
    )
    assert "UNDEFINED_VARIABLE" not in codes(main, resolve_workflow={"lead": sub}.get)
    assert "UNDEFINED_VARIABLE" in codes(main)  # without a resolver nothing is known of 'lead'


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("text", ["{{ a + b }}", "${env:HOME}", "{{ upper(x) }}", "${secret:}"])
def test_template_syntax(text):
    w = wf([("start", "start"), ("hi", "reply", {"text": text})], [("start", "hi")])
    [issue] = only(w, "TEMPLATE_SYNTAX")
    assert issue.node_id == "hi" and "config.text" in issue.message


def test_template_syntax_quiet_on_plain_paths_and_references():
    text = "{{ start.message }} ${secret:CRM_TOKEN} ${config:ORDERS_API} { not a template }"
    w = wf([("start", "start"), ("hi", "reply", {"text": text})], [("start", "hi")])
    assert codes(w) == []


# ------------------------------------------------------------------ subflows


def _caller(target: str, wid: str = "main") -> Workflow:
    return wf(
        [("start", "start"), ("c", "call", {"workflow": target}), ("e", "end")],
        [("start", "c"), ("c", "e")],
        wid=wid,
    )


def test_subflow_missing():
    library = {"faq": _caller("nothing_else", "faq")}
    [issue] = only(_caller("ghost"), "SUBFLOW_MISSING", resolve_workflow=library.get)
    assert issue.node_id == "c" and "ghost" in issue.message
    assert "SUBFLOW_MISSING" not in codes(_caller("faq"), resolve_workflow=library.get)
    assert "SUBFLOW_MISSING" not in codes(_caller("ghost"))  # only checked with a resolver


def test_subflow_recursion_direct_needs_no_resolver():
    [issue] = only(_caller("main"), "SUBFLOW_RECURSION")
    assert issue.node_id == "c"


def test_subflow_recursion_transitive():
    library = {"a": _caller("b", "a"), "b": _caller("main", "b")}
    [issue] = only(_caller("a"), "SUBFLOW_RECURSION", resolve_workflow=library.get)
    assert "calls back into 'main'" in issue.message
    # main -> a -> b -> a: main never returns either.
    library = {"a": _caller("b", "a"), "b": _caller("a", "b")}
    [issue] = only(_caller("a"), "SUBFLOW_RECURSION", resolve_workflow=library.get)
    assert "cycle" in issue.message
    library = {"a": _caller("b", "a"), "b": _caller("faq", "b"), "faq": GOOD.model_copy(update={"id": "faq"})}
    assert "SUBFLOW_RECURSION" not in codes(_caller("a"), resolve_workflow=library.get)


# ------------------------------------------------------------------ layout, positions, graph helpers


def test_layout_unknown_node_is_a_warning():
    w = GOOD.model_copy(update={"layout": {"start": (0, 0), "hi": (0, 140), "gone": (5, 5)}})
    [issue] = only(w, "LAYOUT_UNKNOWN_NODE")
    assert issue.severity == "warning" and "gone" in issue.message
    assert "LAYOUT_UNKNOWN_NODE" not in codes(GOOD.model_copy(update={"layout": {"start": (0, 0)}}))


FILE = textwrap.dedent(
    """\
    version: 1
    id: lines
    name: Line numbers
    nodes:
      - id: start
        type: start
      - id: hi
        type: reply
        config:
          text: "{{ a + b }}"
      - id: broken
        type: reply
        config:
          text: ''
      - id: orphan
        type: tool
    edges:
      - {from: start, to: hi}
      - {from: hi, to: broken, when: nope}
      - {from: start, to: ghost}
    layout:
      start: [0, 0]
      gone: [1, 1]
    """
)


def test_issues_carry_line_and_column_when_loaded_is_given():
    loaded = load(FILE)
    found = {i.code: (i.line, i.col) for i in issues(loaded.workflow, loaded=loaded)}
    assert found["TEMPLATE_SYNTAX"] == (10, 13)  # the config value
    assert found["INVALID_CONFIG"] == (14, 13)
    assert found["UNKNOWN_OUTPUT"] == (19, 34)  # the edge's when:
    assert found["EDGE_UNKNOWN_NODE"] == (20, 5)
    assert found["UNREACHABLE_NODE"] == (15, 5)  # the node's list item
    assert found["LAYOUT_UNKNOWN_NODE"] == (23, 9)
    line = next(i for i in issues(loaded.workflow, loaded=loaded) if i.code == "INVALID_CONFIG")
    assert line.format("lines.yaml").startswith("lines.yaml:14:13: INVALID_CONFIG ")
    assert all(i.line is None for i in issues(loaded.workflow))  # no positions without `loaded`


def test_to_digraph_and_reachable():
    w = wf(
        [("start", "start"), ("b", "branch"), ("hi", "reply", HELLO), ("lost", "reply", HELLO)],
        [("start", "b"), ("b", "hi", "a"), ("b", "hi", "b"), ("b", "ghost")],
    )
    g = to_digraph(w)
    assert isinstance(g, nx.DiGraph)
    assert set(g.nodes) == {"start", "b", "hi", "lost"}
    assert set(g.edges) == {("start", "b"), ("b", "hi")}
    assert g.edges["b", "hi"]["whens"] == ["a", "b"]
    assert reachable(w) == {"start", "b", "hi"}
    assert reachable(wf([("hi", "reply", HELLO)])) == set()


# ------------------------------------------------------------------ scale


def big_workflow(n: int) -> Workflow:
    """start, then n nodes: a branch every 10 nodes whose two routes meet again, tools with
    error edges, set nodes whose values later replies read, and a bounded retry loop."""
    nodes: list[Node] = [Node(id="start", type="start")]
    edges: list[tuple[str, ...]] = []
    prev = "start"
    i = 0
    while i < n:
        k = f"n{i}"
        if i % 10 == 0:
            a, b, join = f"{k}_a", f"{k}_b", f"{k}_j"
            nodes += [
                Node(id=k, type="branch"),
                Node(id=a, type="set", config={"values": {f"v{i}": i}}),
                Node(id=b, type="tool", config={"url": "https://x.test/" + tpl(prev)}, max_visits=2),
                Node(id=join, type="reply", config={"text": tpl(k) + " {{ message }}"}),
            ]
            edges += [(prev, k), (k, a, "a"), (k, b, "b"), (a, join), (b, join), (b, b, "error")]
            edges += [(b, join, "exhausted")]
            prev, i = join, i + 4
        else:
            nodes.append(Node(id=k, type="reply", config={"text": "step " + tpl(prev)}))
            edges.append((prev, k))
            prev, i = k, i + 1
    nodes.append(Node(id="done", type="end"))
    edges.append((prev, "done"))
    return wf(nodes, edges, wid="big")


def test_a_2000_node_workflow_validates_clean():
    w = big_workflow(2000)
    assert len(w.nodes) >= 2000
    assert issues(w) == []
    broken = w.model_copy(update={"edges": w.edges[:-1]})  # the last reply now ends the flow
    assert [(i.code, i.node_id) for i in issues(broken)] == [("UNREACHABLE_NODE", "done")]
