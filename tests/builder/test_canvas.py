"""builder/canvas.py: workflow <-> React Flow JSON, forms from the node schemas, undo history."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from builder import canvas
from builder.graph import validate
from builder.issues import Issue
from builder.schema import Workflow
from builder.yaml_io import dump, load
from core.errors import Invalid
from nodes import NODE_TYPES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "workflows").glob("*.yaml"))

FLOW = """\
version: 1
id: flow
name: Flow
nodes:
  - id: start
    type: start
  - id: ask
    type: extract
    config:
      fields:
        order_id: {pattern: '\\d{4,}', ask: What is your order number?}
  - id: lookup
    type: http_request
    config: {url: "https://orders.example/orders/{{ order_id }}"}
  - id: answer
    type: reply
    config:
      text: Order {{ order_id }} is {{ lookup.body.status }}.
  - id: sorry
    type: reply
    config:
      text: Sorry.
edges:
  - {from: start, to: ask}
  - {from: ask, to: lookup}
  - {from: lookup, to: answer}
  - {from: lookup, to: sorry, when: error}
layout:
  start: [0, 0]
  ask: [0, 140]
  lookup: [0, 280]
  answer: [0, 420]
  sorry: [260, 420]
"""


def wf_of(text: str = FLOW) -> Workflow:
    return load(text).workflow


def browser(flow: dict[str, Any]) -> dict[str, Any]:
    """What the canvas sends back: a JSON round trip of what it was given."""
    return json.loads(json.dumps(flow))


def changed_lines(a: str, b: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_round_trip_without_changes_is_identical() -> None:
    wf = wf_of()
    assert dump(canvas.from_flow(wf, browser(canvas.to_flow(wf)))) == dump(wf)


def test_moving_a_node_changes_only_its_layout_line() -> None:
    wf = wf_of()
    flow = browser(canvas.to_flow(wf))
    node = next(n for n in flow["nodes"] if n["id"] == "lookup")
    node["position"] = {"x": 31.6, "y": 300.2}
    after = dump(canvas.from_flow(wf, flow))
    assert changed_lines(dump(wf), after) == ["-  lookup: [0, 280]", "+  lookup: [32, 300]"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_workflow_opens_on_the_canvas_unchanged(path: Path) -> None:
    text = path.read_text()
    wf = load(text).workflow
    flow = canvas.to_flow(wf)
    assert [n["id"] for n in flow["nodes"]] == [n.id for n in wf.nodes]
    positions = {(n["position"]["x"], n["position"]["y"]) for n in flow["nodes"]}
    assert len(positions) == len(wf.nodes), "two cards on the same spot"
    for n in flow["nodes"]:  # every edge leaves from a handle its card has
        handles = {canvas.DEFAULT_HANDLE, *n["data"]["outputs"]}
        for e in flow["edges"]:
            if e["source"] == n["id"]:
                assert e["sourceHandle"] in handles, (n["id"], e)
    assert dump(canvas.from_flow(wf, browser(flow))) == text


def test_shipped_workflows_have_no_validation_errors_on_the_canvas() -> None:
    wfs = {p.stem: load(p.read_text()).workflow for p in SHIPPED}
    by_id = {w.id: w for w in wfs.values()}
    for name, wf in wfs.items():
        edited = canvas.from_flow(wf, browser(canvas.to_flow(wf)))
        errors = [i for i in validate(edited, resolve_workflow=by_id.get) if i.severity == "error"]
        assert errors == [], name


def test_a_file_without_layout_is_laid_out() -> None:
    wf = wf_of(FLOW.split("layout:")[0])
    flow = canvas.to_flow(wf)
    ys = {n["id"]: n["position"]["y"] for n in flow["nodes"]}
    assert ys["start"] < ys["ask"] < ys["lookup"] < ys["answer"]
    # Saving what the canvas shows writes a layout block for every node.
    assert set(canvas.from_flow(wf, browser(flow)).layout) == {n.id for n in wf.nodes}


def test_edges_use_output_handles_and_come_back_as_when() -> None:
    wf = wf_of()
    flow = canvas.to_flow(wf)
    error_edge = next(e for e in flow["edges"] if e["target"] == "sorry")
    assert error_edge["sourceHandle"] == "error" and error_edge["label"] == "error"
    lookup = next(n for n in flow["nodes"] if n["id"] == "lookup")
    assert lookup["data"]["outputs"] == ["error"]
    flow = browser(flow)
    flow["edges"].append({"source": "ask", "target": "sorry", "sourceHandle": "missing"})
    wf2 = canvas.from_flow(wf, flow)
    assert (wf2.edges[-1].source, wf2.edges[-1].target, wf2.edges[-1].when) == ("ask", "sorry", "missing")
    assert wf2.edges[:-1] == wf.edges


def test_deleting_on_the_canvas_drops_the_node_its_edges_and_layout() -> None:
    wf = wf_of()
    flow = browser(canvas.to_flow(wf))
    flow["nodes"] = [n for n in flow["nodes"] if n["id"] != "sorry"]
    wf2 = canvas.from_flow(wf, flow)
    assert wf2.node("sorry") is None
    assert all("sorry" not in (e.source, e.target) for e in wf2.edges)
    assert "sorry" not in wf2.layout


def test_pasted_node_keeps_config_and_goes_last() -> None:
    wf = wf_of()
    flow = browser(canvas.to_flow(wf))
    copy = json.loads(json.dumps(next(n for n in flow["nodes"] if n["id"] == "answer")))
    copy["id"] = "answer_copy"
    copy["position"] = {"x": 40, "y": 460}
    flow["nodes"].append(copy)
    wf2 = canvas.from_flow(wf, flow)
    assert wf2.nodes[-1].id == "answer_copy"
    assert wf2.nodes[-1].config == wf.node("answer").config  # type: ignore[union-attr]
    assert wf2.layout["answer_copy"] == (40, 460)


@pytest.mark.parametrize(
    "graph",
    [
        {},
        {"nodes": "x", "edges": []},
        {"nodes": [{"position": {"x": 0, "y": 0}}], "edges": []},
        {"nodes": [{"id": "new", "data": {}}], "edges": []},
        {"nodes": [{"id": "bad id!", "data": {"node": {"type": "reply"}}}], "edges": []},
        {"nodes": [{"id": "start"}, {"id": "start"}], "edges": []},
    ],
)
def test_malformed_canvas_json_is_refused(graph: dict[str, Any]) -> None:
    with pytest.raises(Invalid) as e:
        canvas.from_flow(wf_of(), graph)
    assert e.value.code == "canvas_invalid"


def test_add_duplicate_delete_rename() -> None:
    wf, node_id = canvas.add_node(wf_of(), "reply", (10.4, 500))
    assert node_id == "reply" and wf.layout["reply"] == (10, 500)
    wf, second = canvas.add_node(wf, "reply", (0, 0))
    assert second == "reply_2"
    wf, copies = canvas.duplicate_nodes(wf, ["lookup", "sorry"])
    assert copies == ["lookup_copy", "sorry_copy"]
    assert any(e.source == "lookup_copy" and e.target == "sorry_copy" and e.when == "error" for e in wf.edges)
    assert wf.layout["lookup_copy"] == (40, 320)
    wf = canvas.rename_node(wf, "lookup", "fetch")
    assert wf.node("fetch") and "fetch" in wf.layout
    assert any(e.source == "fetch" and e.target == "answer" for e in wf.edges)
    with pytest.raises(Invalid):
        canvas.rename_node(wf, "fetch", "answer")
    with pytest.raises(Invalid):
        canvas.add_node(wf, "no_such_type", (0, 0))
    wf = canvas.delete_nodes(wf, ["fetch"])
    assert wf.node("fetch") is None and all("fetch" not in (e.source, e.target) for e in wf.edges)


def test_relayout_places_every_node() -> None:
    wf = canvas.relayout(wf_of())
    assert wf.layout["start"] == (0, 0) and len(set(wf.layout.values())) == len(wf.nodes)


def test_issue_badges_group_by_node_and_keep_the_worst_severity() -> None:
    issues = [
        Issue("A", "warn", "warning", "n1"),
        Issue("B", "node 'n1' (reply) config.text: bad", "error", "n1"),
        Issue("C", "other", "warning", "n2"),
        Issue("D", "global"),
    ]
    out = canvas.issues_by_node(issues)
    assert out == {
        "n1": {"severity": "error", "messages": ["A: warn", "B: config.text: bad"]},
        "n2": {"severity": "warning", "messages": ["C: other"]},
    }


def test_palette_lists_every_registered_type_once_grouped() -> None:
    groups = canvas.palette()
    types = [i["type"] for g in groups for i in g["items"]]
    assert sorted(types) == sorted(NODE_TYPES)
    assert all(i["group"] == g["group"] for g in groups for i in g["items"])
    assert all(i["description"].endswith(".") for g in groups for i in g["items"])


def test_upstream_variables_are_builtins_ancestors_and_what_they_set() -> None:
    wf = wf_of()
    names = canvas.upstream_variables(wf, "answer")
    assert {"message", "intent", "start", "ask", "order_id", "lookup"} <= set(names)
    assert "answer" not in names and "sorry" not in names
    assert "order_id" not in canvas.upstream_variables(wf, "ask")


# ---------------------------------------------------------------- forms


def kinds(node_type: str, config: dict[str, Any] | None = None) -> dict[str, str]:
    wf, node_id = canvas.add_node(wf_of(), node_type, (0, 0))
    node = wf.node(node_id)
    assert node is not None
    node = node.model_copy(update={"config": config or {}})
    return {f.name: f.kind for f in canvas.form_fields(node)}


def test_form_kinds_come_from_the_json_schema() -> None:
    assert kinds("reply")["text"] == "template"
    http = kinds("http_request")
    assert http["method"] == "select" and http["headers"] == "keyvalue" and http["expect"] == "list"
    assert http["timeout_s"] == "number" and http["retries"] == "integer" and http["idempotency"] == "bool"
    assert http["body"] == "yaml"
    assert kinds("classify")["intents"] == "yaml"
    assert kinds("llm")["prompt"] == "template"
    for node_type in NODE_TYPES:  # every type has a form: id, title, then its config fields
        names = list(kinds(node_type))
        assert names[:2] == [canvas.NODE_ID_FIELD, canvas.NODE_NAME_FIELD]


def test_form_values_are_typed_and_defaults_stay_out_of_the_file() -> None:
    wf, node_id = canvas.add_node(wf_of(), "http_request", (0, 0))
    values = {
        canvas.NODE_ID_FIELD: node_id,
        canvas.NODE_NAME_FIELD: "Create ticket",
        "method": "POST",
        "url": "https://tickets.example/t",
        "headers": "Authorization: Bearer ${secret:TOKEN}",
        "query": "",
        "body": "subject: '{{ message }}'\npriority: 2",
        "timeout_s": "10",  # the default: not written
        "retries": "2",
        "expect": "200\n201",
        "idempotency": "on",
    }
    wf2, errors = canvas.apply_form(wf, node_id, values)
    assert errors == {}
    node = wf2.node(node_id)
    assert node is not None and node.name == "Create ticket"
    assert node.config == {
        "method": "POST",
        "url": "https://tickets.example/t",
        "headers": {"Authorization": "Bearer ${secret:TOKEN}"},
        "body": {"subject": "{{ message }}", "priority": 2},
        "retries": 2,
        "expect": [200, 201],
    }
    assert NODE_TYPES["http_request"].config.model_validate(node.config)


def test_unreadable_form_values_are_reported_per_field_and_change_nothing() -> None:
    wf = wf_of()
    wf2, errors = canvas.apply_form(wf, "lookup", {"retries": "two", "body": "a: [1, 2"})
    assert set(errors) == {"retries", "body"} and "number" in errors["retries"]
    assert errors["body"].startswith("line ")
    assert wf2 is wf


def test_form_keeps_explicit_values_and_renames_through_edges() -> None:
    wf = wf_of()
    node = wf.node("lookup")
    assert node is not None
    form = {f.name: f.value for f in canvas.form_fields(node)}
    form[canvas.NODE_ID_FIELD] = "fetch_order"
    wf2, errors = canvas.apply_form(wf, "lookup", form)
    assert errors == {}
    fetched = wf2.node("fetch_order")
    assert fetched is not None and fetched.config == node.config
    assert [(e.source, e.target) for e in wf2.edges if "fetch_order" in (e.source, e.target)] == [
        ("ask", "fetch_order"),
        ("fetch_order", "answer"),
        ("fetch_order", "sorry"),
    ]
    _, errors = canvas.apply_form(wf, "lookup", {canvas.NODE_ID_FIELD: "answer"})
    assert canvas.NODE_ID_FIELD in errors


def test_unchanged_form_leaves_the_file_unchanged() -> None:
    for path in SHIPPED:
        wf = load(path.read_text()).workflow
        for node in wf.nodes:
            form = {
                f.name: f.value for f in canvas.form_fields(node) if f.kind != "bool" or f.value == "true"
            }
            wf2, errors = canvas.apply_form(wf, node.id, form)
            assert errors == {}, (path.name, node.id, errors)
            assert dump(wf2) == dump(wf), (path.name, node.id)


# ---------------------------------------------------------------- history


def test_history_undo_redo() -> None:
    h = canvas.History(limit=3)
    assert h.undo("a") is None and not h.can_undo
    h.record("a", "b")
    h.record("b", "c")
    h.record("c", "c")  # no change: no step
    assert h.undo("c") == "b"
    assert h.undo("b") == "a"
    assert h.undo("a") is None
    assert h.redo("a") == "b" and h.can_redo
    h.record("b", "x")  # a new change drops the redo branch
    assert not h.can_redo and h.redo("x") is None
    for i in range(10):
        h.record(f"s{i}", f"s{i + 1}")
    assert len(h.past) == 3
