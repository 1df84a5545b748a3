"""Compile + engine semantics with small node types defined here (the real ones have their own tests)."""

from __future__ import annotations

import re
import time

import pytest
from pydantic import Field

from builder.yaml_io import load
from nodes import NODE_TYPES
from nodes.base import NodeConfig, NodeResult, NodeType
from runtime.compile import CompileError, build_graph
from runtime.engine import APOLOGY, Engine


class AskCfg(NodeConfig):
    question: str


def _ask(cfg, inp, ctx):
    m = re.search(r"\d{4,}", inp.message)
    while not m:
        m = re.search(r"\d{4,}", ctx.ask(cfg.question))
    return NodeResult(value=m.group(0), set={"order_id": m.group(0)})


class FailCfg(NodeConfig):
    times: int = 1_000_000
    sleep_s: float = 0.0


_attempts: dict[str, int] = {}


def _fail(cfg, inp, ctx):
    key = f"{ctx.conversation_id}:{inp.node_id}"
    _attempts[key] = _attempts.get(key, 0) + 1
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
        return NodeResult(value="slept")
    if _attempts[key] <= cfg.times:
        raise ConnectionError("backend down")
    return NodeResult(value={"attempt": _attempts[key]})


class BranchCfg(NodeConfig):
    pick: str = Field(description="output label, or a {{ template }}")


def _branch(cfg, inp, ctx):
    label = inp.vars.get(cfg.pick[2:-2].strip()) if cfg.pick.startswith("{{") else cfg.pick
    return NodeResult(value=label, output=label or None)


class CountCfg(NodeConfig):
    var: str = "n"


def _count(cfg, inp, ctx):
    return NodeResult(set={cfg.var: int(inp.vars.get(cfg.var) or 0) + 1})


REGISTRY = {
    **NODE_TYPES,
    "ask": NodeType("ask", "Ask", "t", "x", AskCfg, _ask, asks_user=True),
    "fail": NodeType("fail", "Fail", "t", "x", FailCfg, _fail, can_fail=True),
    "branch": NodeType("branch", "Branch", "t", "x", BranchCfg, _branch, outputs=lambda c: ["a", "b"]),
    "count": NodeType("count", "Count", "t", "x", CountCfg, _count),
}


def wf(text: str):
    return load(text).workflow


def engine(**kw) -> Engine:
    return Engine(llm=object(), router=object(), http=object(), registry=REGISTRY, **kw)


HEAD = "version: 1\nid: {id}\nname: T\nnodes:\n  - id: start\n    type: start\n"


def test_linear_reply_and_event_order():
    w = wf(
        HEAD.format(id="lin")
        + """  - id: hi
    type: reply
    config:
      text: Hello {{ message }}
edges:
  - {from: start, to: hi}
"""
    )
    r = engine().run_turn(w, "c", "Ann")
    assert r.reply == "Hello Ann"
    assert r.path == ["start", "hi"]
    types = [e["type"] for e in r.events]
    assert types[0] == "turn_started" and types[-1] == "turn_finished"
    assert types.count("node_started") == 2 and types.count("node_finished") == 2
    assert [e["seq"] for e in r.events] == list(range(1, len(r.events) + 1))


ASK_FLOW = (
    HEAD
    + """  - id: get
    type: ask
    config:
      question: What is your order number?
  - id: say
    type: reply
    config:
      text: Order {{{{ order_id }}}} found.
edges:
  - {{from: start, to: get}}
  - {{from: get, to: say}}
"""
)


def test_ask_ends_turn_and_next_message_resumes_at_that_node():
    e = engine()
    w = wf(ASK_FLOW.format(id="ask"))
    r1 = e.run_turn(w, "c1", "my package hasn't arrived")
    assert r1.waiting and r1.reply == "What is your order number?"
    r2 = e.run_turn(w, "c1", "it's 55120")
    assert not r2.waiting and r2.reply == "Order 55120 found."
    assert r2.path[0] == "get"  # resumed, not restarted at start
    # the question and both user messages are in the conversation, once each
    state = e.graph(w).get_state({"configurable": {"thread_id": "c1"}}).values
    contents = [m["content"] for m in state["messages"]]
    assert contents == [
        "my package hasn't arrived",
        "What is your order number?",
        "it's 55120",
        "Order 55120 found.",
    ]
    # a new message after the flow ended starts again at start
    r3 = e.run_turn(w, "c1", "and 48213?")
    assert r3.path[0] == "start" and r3.reply == "Order 48213 found."


def test_conversations_are_isolated_by_id():
    e = engine()
    w = wf(ASK_FLOW.format(id="iso"))
    assert e.run_turn(w, "a", "hello").waiting
    r = e.run_turn(w, "b", "order 12345")
    assert r.reply == "Order 12345 found." and r.path[0] == "start"


def test_subflow_runs_nested_and_resumes_inside_it():
    sub = wf(ASK_FLOW.format(id="sub"))
    main = wf(
        HEAD.format(id="main")
        + """  - id: call
    type: subflow
    config:
      workflow: sub
  - id: after
    type: reply
    config:
      text: Back in main with {{ order_id }}.
edges:
  - {from: start, to: call}
  - {from: call, to: after}
"""
    )
    e = engine(resolve={"sub": sub}.get)
    r1 = e.run_turn(main, "c", "hi")
    assert r1.waiting and r1.path == ["start", "sub/start", "sub/get"]
    r2 = e.run_turn(main, "c", "it is 7777")
    assert r2.replies == ["Order 7777 found.", "Back in main with 7777."]
    assert r2.path == ["sub/get", "sub/say", "after"]


def test_subflow_recursion_is_refused():
    a = wf(
        HEAD.format(id="a")
        + """  - id: call
    type: subflow
    config:
      workflow: a
edges:
  - {from: start, to: call}
"""
    )
    with pytest.raises(CompileError, match="recursion"):
        build_graph(a, resolve={"a": a}.get, registry=REGISTRY)


FAIL_FLOW = (
    HEAD
    + """  - id: call
    type: fail
{policy}  - id: ok
    type: reply
    config:
      text: fine {{{{ call }}}}
  - id: sorry
    type: reply
    config:
      text: The system is down.
edges:
  - {{from: start, to: call}}
  - {{from: call, to: ok}}
{error_edge}"""
)


def test_failure_takes_the_error_edge():
    w = wf(FAIL_FLOW.format(id="f1", policy="", error_edge="  - {from: call, to: sorry, when: error}\n"))
    r = engine().run_turn(w, "c", "x")
    assert r.reply == "The system is down." and r.error is None
    assert any(e["type"] == "node_error" for e in r.events)


def test_failure_without_error_edge_uses_policy_default():
    w = wf(FAIL_FLOW.format(id="f2", policy="    policy:\n      default: cached\n", error_edge=""))
    r = engine().run_turn(w, "c", "x")
    assert r.reply == "fine cached"


def test_unhandled_failure_apologises_and_records_it():
    w = wf(FAIL_FLOW.format(id="f3", policy="", error_edge=""))
    r = engine().run_turn(w, "c", "x")
    assert r.reply == APOLOGY and r.error and "backend down" in r.error
    assert next(e for e in r.events if e["type"] == "turn_failed")["node"] == "call"


def test_retries_with_backoff_then_success():
    text = FAIL_FLOW.format(
        id="f4", policy="    policy:\n      retries: 2\n      backoff_s: 0.001\n", error_edge=""
    )
    text = text.replace("type: fail\n", "type: fail\n    config:\n      times: 2\n", 1)
    r = engine().run_turn(wf(text), "retry-conv", "x")
    assert r.reply.startswith("fine ") and '"attempt": 3' in r.reply
    assert [e["attempt"] for e in r.events if e["type"] == "node_error"] == [1, 2]


def test_node_timeout_routes_to_error():
    text = FAIL_FLOW.format(
        id="f5",
        policy="    policy:\n      timeout_s: 0.01\n",
        error_edge="  - {from: call, to: sorry, when: error}\n",
    ).replace("type: fail\n", "type: fail\n    config:\n      sleep_s: 0.05\n", 1)
    r = engine().run_turn(wf(text), "c", "x")
    assert r.reply == "The system is down."
    assert any(e["type"] == "node_error" and e["error"] == "TimeoutError" for e in r.events)


BRANCH_FLOW = (
    HEAD
    + """  - id: pick
    type: branch
    config:
      pick: '{{{{ message }}}}'
  - id: ra
    type: reply
    config:
      text: took a
  - id: rb
    type: reply
    config:
      text: took b
  - id: rd
    type: reply
    config:
      text: took default
edges:
  - {{from: start, to: pick}}
  - {{from: pick, to: ra, when: a}}
  - {{from: pick, to: rb, when: b}}
  - {{from: pick, to: rd}}
"""
)


@pytest.mark.parametrize(("msg", "reply"), [("a", "took a"), ("b", "took b"), ("zzz", "took default")])
def test_named_outputs_and_default_edge(msg, reply):
    r = engine().run_turn(wf(BRANCH_FLOW.format(id="br")), "c", msg)
    assert r.reply == reply


def test_fan_out_and_join_all():
    w = wf(
        HEAD.format(id="par")
        + """  - id: left
    type: count
    config:
      var: l
  - id: right1
    type: count
    config:
      var: r
  - id: right2
    type: count
    config:
      var: r
  - id: join
    type: reply
    join: all
    config:
      text: l={{ l }} r={{ r }}
edges:
  - {from: start, to: left}
  - {from: start, to: right1}
  - {from: right1, to: right2}
  - {from: left, to: join}
  - {from: right2, to: join}
"""
    )
    r = engine().run_turn(w, "c", "go")
    assert r.replies == ["l=1 r=2"]  # the join ran once, after both branches
    assert r.path.count("join") == 1


def test_bounded_loop_takes_exhausted_output():
    w = wf(
        HEAD.format(id="loop")
        + """  - id: inc
    type: count
    max_visits: 3
  - id: done
    type: reply
    config:
      text: looped {{ n }} times
edges:
  - {from: start, to: inc}
  - {from: inc, to: inc}
  - {from: inc, to: done, when: exhausted}
"""
    )
    r = engine().run_turn(w, "c", "go")
    assert r.reply == "looped 3 times"
    # the bound resets when the flow starts again
    assert engine().run_turn(w, "c2", "go").reply == "looped 3 times"


def test_compiled_graph_cache_is_keyed_by_content():
    e = engine()
    w = wf(ASK_FLOW.format(id="cache"))
    e.run_turn(w, "c1", "1234")
    e.run_turn(w, "c2", "5678")
    assert (e.cache.misses, e.cache.hits) == (1, 1)
    changed = wf(ASK_FLOW.format(id="cache").replace("found.", "located."))
    assert e.run_turn(changed, "c3", "1234").reply == "Order 1234 located."
    assert e.cache.misses == 2


def test_mermaid_graph_names_every_node():
    text = (
        build_graph(wf(BRANCH_FLOW.format(id="mm")), registry=REGISTRY).compile().get_graph().draw_mermaid()
    )
    for node_id in ("start", "pick", "ra", "rb", "rd"):
        assert node_id in text
