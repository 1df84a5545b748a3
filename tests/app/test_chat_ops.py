"""The chat test page's operations on the real runtime: draft conversation -> queue -> worker ->
pub/sub stream -> event-store trace; saving the chat as a conversation test; the pure shaping.

Runs on {SQLite, PostgreSQL} x {embedded worker thread, real Redis + TurnWorker}.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from app import chat_ops as ops
from builder import conversation_tests as ct
from builder.yaml_io import load
from core.db import new_id, tenant_session
from core.errors import Forbidden, Invalid
from runtime import service as svc
from runtime.streams import Subscription
from tenants import roles
from tenants.principal import Principal
from tests.app.conftest import Api
from tests.app.test_api_chat import TALKER
from tests.queue_fixtures import QueueBackend, queue_backend  # noqa: F401

pytestmark = pytest.mark.usefixtures("engine")

SHOP = """\
version: 1
id: shop
name: Shop
nodes:
  - id: start
    type: start
  - id: route
    type: classify
    config:
      intents:
        - name: greeting
          description: The user says hello
          examples: [hello, hi there, good morning, hey]
        - name: refund
          description: The user wants money back
          examples: [I want a refund, give me my money back, refund my order]
  - id: hello
    type: reply
    config:
      text: Hello! How can I help?
  - id: money
    type: subflow
    config:
      workflow: talker
edges:
  - {from: start, to: route}
  - {from: route, to: hello, when: greeting}
  - {from: route, to: money}
"""


def owner(a: Api, role: str = "owner") -> Principal:
    return Principal(a.tenant_id, "user", a.owner_id, roles.ROLE_SCOPES[role], role=role, user_id=a.owner_id)


@pytest.fixture
def shop(tenant: Callable[..., Api], queue_backend: QueueBackend) -> Principal:  # noqa: F811
    a = tenant()
    # The shop first: saved while its subflow is missing, it is marked invalid until re-checked.
    assert a.push(SHOP).json()["valid"] is False
    assert a.push(TALKER).status_code == 201
    return owner(a)


async def _turn(p: Principal, cid: str, text: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """What the page's background task does: subscribe, post, enqueue, read events until done."""
    turn_id = new_id()
    seen: list[tuple[str, dict[str, Any]]] = []
    async with Subscription(turn_id, live=True) as sub:
        posted = await asyncio.to_thread(ops.post, p, cid, text, turn_id)
        await asyncio.to_thread(ops.enqueue, p, posted)
        async for event, data in sub.events(time.monotonic() + 60):
            seen.append((event, data))
            if event == "done":
                return seen, data
    done = await asyncio.to_thread(ops.finished, p, turn_id)
    assert done is not None, seen
    return seen, done


def test_a_draft_turn_streams_and_its_trace_lights_the_canvas(shop: Principal) -> None:
    view = ops.open_panel(shop, "shop")
    assert view.valid and view.cases == 0
    assert {n["id"] for n in view.flow["nodes"]} == {"start", "route", "hello", "money"}
    cid = ops.start(shop, "shop")

    events, done = asyncio.run(_turn(shop, cid, "I want a refund for my order"))
    kinds = [e for e, _ in events]
    assert "route" in kinds and "node" in kinds and kinds[-1] == "done"
    assert done["intent"] == "refund" and done["reply"]

    wf = load(SHOP).workflow
    detail = ops.turn_detail(shop, done["turn_id"], wf)
    assert detail["path"][:2] == ["start", "route"] and "talker/answer" in detail["path"]
    assert detail["highlight"] == ["start", "route", "money"]  # the subflow's inner nodes light its node
    assert detail["decision"]["intent"] == "refund"
    assert (
        detail["decision"]["layer"]
        and detail["decision"]["tier"]
        and detail["decision"]["confidence"].endswith("%")
    )
    rows = {r["node"]: r for r in detail["nodes"]}
    assert rows["route"]["output"] == "refund" and "intent refund" in rows["route"]["details"]
    assert rows["talker/answer"]["tokens"] != "-" and rows["talker/answer"]["duration"].endswith(" ms")

    # Save the chat as a test case: stored as the workflow's tests, and it passes when replayed.
    tests = ops.save_case(
        shop,
        "shop",
        "refund chat",
        [
            {
                "user": "I want a refund for my order",
                "reply": done["reply"],
                "intent": done["intent"],
                **detail,
            }
        ],
    )
    assert [c.name for c in tests.cases] == ["refund chat"]
    assert ops.open_panel(shop, "shop").cases == 1
    with tenant_session(shop.tenant_id) as s:
        from builder import service as wfs

        stored = ct.load_tests(wfs.get_tests(s, tenant_id=shop.tenant_id, slug="shop") or "")
        expect = stored.cases[0].turns[0].expect
        assert expect.intent == "refund" and "talker/answer" in expect.path_includes
        wfs.publish(s, tenant_id=shop.tenant_id, slug="talker", author="t")
        v = wfs.publish(s, tenant_id=shop.tenant_id, slug="shop", author="t")  # the gate replays it: passes
        assert v.number == 1

    ops.discard(shop, cid)
    with pytest.raises(Exception, match="no conversation"):
        svc.transcript(shop.tenant_id, cid)


def test_greeting_turn_has_its_own_path(shop: Principal) -> None:
    cid = ops.start(shop, "shop")
    _events, done = asyncio.run(_turn(shop, cid, "hi there"))
    detail = ops.turn_detail(shop, done["turn_id"], load(SHOP).workflow)
    assert detail["highlight"] == ["start", "route", "hello"]
    assert done["reply"] == "Hello! How can I help?"


def test_save_case_refuses_bad_input_and_viewers(shop: Principal, tenant: Callable[..., Api]) -> None:
    turn = {"user": "hi", "intent": "greeting", "path": ["start"], "reply": "Hello"}
    with pytest.raises(Invalid, match="name"):
        ops.save_case(shop, "shop", "  ", [turn])
    with pytest.raises(Invalid, match="at least one message"):
        ops.save_case(shop, "shop", "x", [])
    viewer = Principal(shop.tenant_id, "user", "v", roles.ROLE_SCOPES["viewer"], role="viewer", user_id="v")
    with pytest.raises(Forbidden):
        ops.save_case(viewer, "shop", "x", [turn])
    with pytest.raises(Forbidden):
        ops.start(viewer, "shop")


# ---------------------------------------------------------------- pure shaping


def test_canvas_highlight_maps_subflow_labels_and_drops_unknown_nodes() -> None:
    wf = load(SHOP).workflow
    assert ops.canvas_highlight(wf, ["start", "route", "talker/start", "talker/answer", "ghost"]) == [
        "start",
        "route",
        "money",
    ]
    assert ops.canvas_highlight(wf, []) == []


def test_node_rows_and_decision_from_events() -> None:
    events = [
        {"type": "turn_started", "seq": 1},
        {"type": "node_started", "node": "look", "node_type": "http_request", "seq": 2},
        {
            "type": "node_error",
            "node": "look",
            "error": "TimeoutError",
            "message": "slow",
            "attempt": 1,
            "seq": 3,
        },
        {
            "type": "tool_called",
            "node": "look",
            "method": "GET",
            "host": "api",
            "path": "/o/1",
            "status": 200,
        },
        {"type": "node_finished", "node": "look", "output": "default", "duration_ms": 12.345, "seq": 5},
        {"type": "node_started", "node": "ask", "node_type": "extract", "seq": 6},
    ]
    look, ask = ops.node_rows(events)
    assert look == {
        "node": "look",
        "type": "http_request",
        "output": "default",
        "duration": "12.3 ms",
        "tokens": "-",
        "details": "GET api/o/1 -> 200",
        "errors": "TimeoutError: slow (attempt 1)",
    }
    assert ask["output"] == "(waiting)" and ask["duration"] == "-"
    assert ops.decision(None) == {}
    d = ops.decision(
        {"intent": "faq", "confidence": 0.8731, "layer": "classifier", "tier": "cheap", "reason": "r"}
    )
    assert d == {"intent": "faq", "confidence": "87%", "layer": "classifier", "tier": "cheap", "reason": "r"}
