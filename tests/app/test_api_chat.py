"""The chat API end to end: HTTP -> turns table -> RQ -> worker -> events -> reply.

Every test runs on {SQLite, PostgreSQL} x {embedded fakeredis + worker thread, real Redis +
TurnWorker}: the real queue, the real worker code, the real databases (RLS live on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from core.db import tenant_session
from runtime import service as svc
from runtime.models import Turn
from tests.app.conftest import Api
from tests.queue_fixtures import GREETER, QueueBackend, eventually, queue_backend  # noqa: F401

TALKER = """\
version: 1
id: talker
name: Talker
nodes:
  - id: start
    type: start
  - id: intent
    type: classify
    config:
      intents:
        - name: greeting
          description: The user says hello
          examples: [hello, hi there, good morning, hey]
        - name: refund
          description: The user wants money back
          examples: [I want a refund, give me my money back, refund my order]
  - id: answer
    type: llm
    config:
      prompt: You are a friendly support agent.
edges:
  - {from: start, to: intent}
  - {from: intent, to: answer}
"""

HANDOFF = """\
version: 1
id: human
name: Human please
nodes:
  - id: start
    type: start
  - id: pass
    type: handoff
    config:
      reason: 'The user asked for a person: {{ message }}'
      message: A colleague will take over this chat.
      priority: high
      queue: escalations
edges:
  - {from: start, to: pass}
"""


@pytest.fixture
def chat(
    tenant: Callable[..., Api],
    queue_backend: QueueBackend,  # noqa: F811
) -> Callable[..., Api]:
    """A tenant with the three test workflows published."""

    def make(name: str = "Acme", plan: str = "business") -> Api:
        api = tenant(name, plan=plan)
        for text in (GREETER, TALKER, HANDOFF):
            r = api.push(text)
            assert r.status_code in (200, 201), r.text
            slug = r.json()["id"] if "id" in r.json() else r.json()["slug"]
            assert api.post(f"/workflows/{slug}/publish").status_code == 200
        return api

    return make


def start(api: Api, workflow: str = "greeter", **kw: Any) -> str:
    r = api.post("/conversations", json={"workflow_id": workflow, **kw})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def say(api: Api, cid: str, text: str, **kw: Any) -> dict[str, Any]:
    r = api.post(f"/conversations/{cid}/messages", json={"text": text}, **kw)
    assert r.status_code == 200, r.text
    return dict(r.json())


def sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith(":")]
        if not lines:
            continue
        event = next(ln[7:] for ln in lines if ln.startswith("event: "))
        data = json.loads(next(ln[6:] for ln in lines if ln.startswith("data: ")))
        out.append((event, data))
    return out


# ---------------------------------------------------------------- the happy paths


def test_a_conversation_continues_across_turns(chat):
    api = chat()
    cid = start(api)
    first = say(api, cid, "hello")
    assert first["reply"] == "What is your name?"
    assert first["waiting"] is True and first["status"] == "done"
    second = say(api, cid, "I am Alice")
    assert second["reply"] == "Nice to meet you, Alice!"
    assert second["path"] == ["ask_name", "hi"]
    assert {"turn_id", "reply", "intent", "path", "usage"} <= set(second)

    transcript = api.get(f"/conversations/{cid}").json()
    assert [(m["seq"], m["text"], m["reply"]) for m in transcript["messages"]] == [
        (1, "hello", "What is your name?"),
        (2, "I am Alice", "Nice to meet you, Alice!"),
    ]
    # The event store has the whole turn: replay rebuilds the same path and reply.
    trace = api.get(f"/turns/{second['turn_id']}/trace").json()
    assert trace["path"] == second["path"] and trace["replies"] == [second["reply"]]
    assert [e["type"] for e in trace["events"]].count("turn_finished") == 1


def test_routed_turn_reports_intent_and_learns_from_feedback(chat):
    api = chat()
    cid = start(api, "talker")
    out = say(api, cid, "I want a refund for my order")
    assert out["intent"] == "refund"
    assert out["route"]["tier"] in ("cheap", "strong") and out["usage"]["llm_calls"] >= 1
    r = api.post(f"/turns/{out['turn_id']}/feedback", json={"score": 1})
    assert r.status_code == 200 and r.json() == {"turn_id": out["turn_id"], "feedback": 1, "learned": True}
    from core.redis import get_redis
    from runtime.bandit import RedisFeatureStore, TierBandit

    counts = TierBandit(RedisFeatureStore(get_redis())).counts(api.tenant_id, "refund")
    assert counts[out["route"]["tier"]][0] == 1.0
    # A second vote changes the stored score but does not count twice.
    again = api.post(f"/turns/{out['turn_id']}/feedback", json={"score": -1}).json()
    assert again["learned"] is False and again["feedback"] == -1
    assert TierBandit(RedisFeatureStore(get_redis())).counts(api.tenant_id, "refund") == counts


def test_stream_sends_node_route_token_and_done_events(chat):
    api = chat()
    cid = start(api, "talker")
    r = api.post(f"/conversations/{cid}/messages?stream=true", json={"text": "hello there"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert {"node", "route", "token"} <= set(kinds), kinds
    done = events[-1][1]
    tokens = "".join(d["text"] for e, d in events if e == "token")
    assert tokens and tokens.strip() in done["reply"]
    assert done["intent"] == "greeting"
    nodes = [(d["status"], d["node"]) for e, d in events if e == "node"]
    assert ("started", "intent") in nodes and ("finished", "answer") in nodes


def test_202_with_a_stream_url_when_the_reply_takes_longer_than_wait(chat):
    api = chat()
    cid = start(api)
    r = api.post(f"/conversations/{cid}/messages?wait=0", json={"text": "hello"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["stream_url"] == f"/api/v1/turns/{body['turn_id']}/stream"
    turn = eventually(lambda: (t := api.get(f"/turns/{body['turn_id']}").json())["status"] == "done" and t)
    assert turn["reply"] == "What is your name?"
    # A stream opened after the end still gets the result.
    late = sse(api.get(f"/turns/{body['turn_id']}/stream").text)
    assert late == [("done", late[0][1])] and late[0][1]["reply"] == "What is your name?"


def test_idempotency_key_never_makes_a_second_turn(chat):
    api = chat()
    cid = start(api)
    h = {"Idempotency-Key": "msg-1"}
    first = api.post(f"/conversations/{cid}/messages", json={"text": "hello"}, headers=h)
    again = api.post(f"/conversations/{cid}/messages", json={"text": "hello"}, headers=h)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["turn_id"] == again.json()["turn_id"]
    assert first.json()["reply"] == again.json()["reply"]
    other = api.post(f"/conversations/{cid}/messages", json={"text": "something else"}, headers=h)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(api.get(f"/conversations/{cid}").json()["messages"]) == 1


def test_handoff_queues_the_conversation_and_silences_the_bot(chat):
    api = chat()
    cid = start(api, "human")
    out = say(api, cid, "let me talk to a person")
    assert out["reply"] == "A colleague will take over this chat."
    queue = api.get("/handoffs").json()["handoffs"]
    assert [h["id"] for h in queue] == [cid]
    assert queue[0]["status"] == "waiting_human"
    assert queue[0]["handoff"]["queue"] == "escalations" and queue[0]["handoff"]["priority"] == "high"
    assert "let me talk to a person" in queue[0]["handoff"]["reason"]
    assert queue[0]["last_messages"][-1]["text"] == "let me talk to a person"
    held = say(api, cid, "hello? anyone?")
    assert held["held"] is True and held["reply"] is None
    assert api.post(f"/handoffs/{cid}/release", json={}).json()["status"] == "active"
    assert api.get("/handoffs").json()["handoffs"] == []
    assert say(api, cid, "back again")["reply"] == "A colleague will take over this chat."


def test_deleting_a_conversation_erases_messages_events_and_checkpoints(chat):
    api = chat()
    cid = start(api)
    say(api, cid, "hello")
    say(api, cid, "I am Bob")
    r = api.call("DELETE", f"/conversations/{cid}")
    assert r.status_code == 200, r.text
    deleted = r.json()["deleted"]
    assert deleted["turns"] == 2 and deleted["run_events"] > 0 and deleted["checkpoints"] > 0
    assert api.get(f"/conversations/{cid}").status_code == 404


# ---------------------------------------------------------------- limits


def test_concurrency_cap_refuses_before_enqueue(chat, monkeypatch, queue_backend):  # noqa: F811
    api = chat(plan="free")  # 4 turns in flight at most
    queue_backend.stop_workers()
    monkeypatch.setattr("runtime.worker.ensure_embedded_worker", lambda settings=None: None)
    convs = [start(api) for _ in range(5)]
    for cid in convs[:4]:
        assert api.post(f"/conversations/{cid}/messages?wait=0", json={"text": "hi"}).status_code == 202
    r = api.post(f"/conversations/{convs[4]}/messages?wait=0", json={"text": "hi"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_turns"
    assert api.get(f"/conversations/{convs[4]}").json()["messages"] == []


# ---------------------------------------------------------------- bad and hostile input


def test_bad_input_gets_a_coded_json_error_and_loses_nothing(chat):
    api = chat()
    cid = start(api)
    url = f"/conversations/{cid}/messages"
    cases = [
        (api.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 422),
        (api.post(url, json={"text": ""}), 422),
        (api.post(url, json={"text": "x" * (svc.MAX_TEXT_CHARS + 1)}), 422),
        (api.post(url, json={"text": "hi", "tenant_id": "someone-else"}), 422),
        (api.post(url, json={"text": 42}), 422),
        (api.post(url, content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}), 413),
        (api.post("/conversations/nope/messages", json={"text": "hi"}), 404),
        (api.post("/conversations", json={"workflow_id": "no-such-flow"}), 404),
        (api.post(url, json={"text": "hi"}, headers={"Idempotency-Key": "k" * 201}), 422),
        (api.post("/turns/nope/feedback", json={"score": 1}), 404),
        (api.post("/conversations/a%20b/messages", json={"text": "hi"}), 422),
    ]
    for r, status in cases:
        assert r.status_code == status, (r.status_code, r.text)
        assert r.json()["error"]["code"], r.text
    assert api.get(f"/conversations/{cid}").json()["messages"] == []
    turn = say(api, cid, "hello")
    bad_score = api.post(f"/turns/{turn['turn_id']}/feedback", json={"score": 5})
    assert bad_score.status_code == 422 and bad_score.json()["error"]["code"]


def test_another_tenants_conversation_and_turns_are_404_and_untouched(chat):
    a, b = chat("A"), chat("B")
    cid = start(a)
    turn = say(a, cid, "hello")
    before = a.get(f"/conversations/{cid}").json()
    for r in (
        b.get(f"/conversations/{cid}"),
        b.post(f"/conversations/{cid}/messages", json={"text": "hi"}),
        b.call("DELETE", f"/conversations/{cid}"),
        b.get(f"/turns/{turn['turn_id']}"),
        b.get(f"/turns/{turn['turn_id']}/stream"),
        b.get(f"/turns/{turn['turn_id']}/trace"),
        b.post(f"/turns/{turn['turn_id']}/feedback", json={"score": -1}),
        b.post(f"/handoffs/{cid}/release", json={}),
    ):
        assert r.status_code == 404, (r.request.url, r.status_code, r.text)
    assert a.get(f"/conversations/{cid}").json() == before
    with tenant_session(b.tenant_id) as s:
        assert s.get(Turn, turn["turn_id"]) is None


def test_chat_needs_the_chat_scope(chat):
    api = chat()
    cid = start(api)
    reader = api.key_with("workflows:read")
    r = api.post(f"/conversations/{cid}/messages", json={"text": "hi"}, key=reader)
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    draft = api.post(
        "/conversations", json={"workflow_id": "greeter", "draft": True}, key=api.key_with("chat")
    )
    assert draft.status_code == 403


# ---------------------------------------------------------------- a saga through the queue


@pytest.fixture
def demo_api(monkeypatch):
    """The demo orders/payments API on a free port, named by the settings the worker reads."""
    from core.settings import get_settings
    from runtime.demo_api import serve_in_thread

    url, stop = serve_in_thread("127.0.0.1", 0)
    monkeypatch.setenv("FLOWDESK_DEMO_API_PORT", url.rsplit(":", 1)[1])
    get_settings.cache_clear()
    yield url
    stop()
    get_settings.cache_clear()


@pytest.mark.parametrize("fault", [None, "payments.charge", "orders.create"])
def test_create_order_saga_runs_and_compensates_through_the_queue(tenant, queue_backend, demo_api, fault):  # noqa: F811
    import httpx

    from core.settings import ROOT

    api = tenant("Shop")
    r = api.push((ROOT / "workflows" / "create_order.yaml").read_text())
    assert r.status_code in (200, 201), r.text
    assert api.post("/workflows/create_order/publish").status_code == 200
    cid = start(api, "create_order")
    assert say(api, cid, "2 hoodies please")["waiting"]
    assert "Shall I place the order?" in say(api, cid, "kim@example.com")["reply"]
    if fault:
        httpx.post(f"{demo_api}/_control", json={"fail": [fault]}).raise_for_status()
    r = api.post(f"/conversations/{cid}/messages?stream=true", json={"text": "yes"})
    done = sse(r.text)[-1][1]
    payments = httpx.get(f"{demo_api}/payments", params={"email": "kim@example.com"}).json()
    orders = httpx.get(f"{demo_api}/orders", params={"email": "kim@example.com"}).json()
    trace = api.get(f"/turns/{done['turn_id']}/trace").json()
    steps = [(e["step"], e["status"]) for e in trace["events"] if e["type"] == "saga_step"]
    undone = [e["step"] for e in trace["events"] if e["type"] == "compensated"]
    if fault is None:
        assert "is placed and 98.0 was charged" in done["reply"]
        assert len(orders) == 1 and [p["status"] for p in payments] == ["captured"]
        assert undone == []
    elif fault == "payments.charge":
        assert "nothing was charged and nothing was ordered" in done["reply"]
        assert payments == [] and orders == [] and undone == ["reserve"]
    else:  # the last step failed: the charge is refunded and the stock released, in reverse order
        assert "refunded" in done["reply"]
        assert orders == [] and [p["status"] for p in payments] == ["refunded"]
        assert undone == ["charge", "reserve"], steps


def test_openapi_documents_the_chat_routes(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/turns/{turn_id}/stream",
        "/api/v1/turns/{turn_id}/feedback",
        "/api/v1/handoffs",
    ):
        assert path in paths, path
    params = {
        p["name"] for p in paths["/api/v1/conversations/{conversation_id}/messages"]["post"]["parameters"]
    }
    assert {"stream", "wait", "Idempotency-Key"} <= params


def test_redis_unreachable_is_a_503_and_stores_nothing(tenant, monkeypatch):
    from core.settings import get_settings

    api = tenant()
    assert api.push(GREETER).status_code in (200, 201)
    assert api.post("/workflows/greeter/publish").status_code == 200
    cid = start(api)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    get_settings.cache_clear()
    try:
        r = api.post(f"/conversations/{cid}/messages", json={"text": "hello"})
    finally:
        get_settings.cache_clear()
    assert r.status_code == 503 and r.json()["error"]["code"] == "queue_unavailable"
    monkeypatch.delenv("REDIS_URL")
    assert api.get(f"/conversations/{cid}").json()["messages"] == []
