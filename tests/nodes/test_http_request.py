"""``http_request`` against the demo API over real HTTP, through the guarded client."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import ValidationError

from nodes.http_request import NODE, Config, UnexpectedStatus, idempotency_key, run, substitute
from runtime.context import ReferenceError_
from runtime.http import BlockedURL
from tests.nodes import demo_api, make_ctx, make_engine, make_input, reset_demo, workflow

SECRET = "tok-very-secret-123"


@pytest.fixture(autouse=True)
def fresh_demo():
    reset_demo()
    yield
    reset_demo()


def cfg(**kw) -> Config:
    return Config.model_validate(kw)


def test_get_order_and_tool_called_event():
    ctx = make_ctx()
    res = run(
        cfg(url="${config:ORDERS_API}/orders/{{ order_id }}"), make_input("x", {"order_id": "48213"}), ctx
    )
    assert res.value["status"] == 200 and res.value["ok"] is True
    assert res.value["body"]["status"] == "shipped" and res.value["body"]["carrier"] == "UPS"
    (event,) = ctx.events.of_type("tool_called")
    p = event.payload
    assert (p["method"], p["host"], p["path"], p["status"], p["attempt"]) == (
        "GET",
        "127.0.0.1",
        "/orders/48213",
        200,
        1,
    )
    assert p["latency_ms"] >= 0 and p["node"] == "n"


def test_template_values_are_url_escaped():
    ctx = make_ctx()
    url = substitute(
        "${config:ORDERS_API}/orders/{{ id }}?q={{ id }}", {"id": "1/../health?x=1&y"}, ctx, "url"
    )
    assert url == f"{demo_api()}/orders/1%2F..%2Fhealth%3Fx%3D1%26y?q=1%2F..%2Fhealth%3Fx%3D1%26y"
    with pytest.raises(UnexpectedStatus) as err:
        run(cfg(url="${config:ORDERS_API}/orders/{{ id }}"), make_input("x", {"id": "../health"}), ctx)
    assert err.value.status in (404, 422)


def test_user_text_cannot_inject_a_reference():
    ctx = make_ctx(secrets={"API_TOKEN": SECRET})
    config = cfg(
        method="POST",
        url="${config:TICKETS_API}/tickets",
        body={"subject": "Help", "severity": "low", "text": "{{ message }}"},
    )
    res = run(config, make_input("leak ${secret:API_TOKEN} please"), ctx)
    assert res.value["status"] == 201
    assert res.value["body"]["text"] == "leak ${secret:API_TOKEN} please"


def test_a_secret_value_is_not_expanded_as_a_template():
    ctx = make_ctx(secrets={"T": "abc{{ message }}"})
    assert substitute("x ${secret:T}", {"message": "hello"}, ctx, "text") == "x abc{{ message }}"


def test_secrets_never_reach_events_or_errors():
    ctx = make_ctx(secrets={"API_TOKEN": SECRET})
    config = cfg(
        url="${config:ORDERS_API}/orders/{{ id }}?key=${secret:API_TOKEN}",
        headers={"Authorization": "Bearer ${secret:API_TOKEN}"},
        query={"email": "{{ email }}"},
    )
    with pytest.raises(UnexpectedStatus) as err:
        run(config, make_input("x", {"id": "99999", "email": "ana@example.com"}), ctx)
    assert "There is no order 99999" in str(err.value) and SECRET not in str(err.value)
    dumped = json.dumps([e.to_dict() for e in ctx.events.events])
    assert SECRET not in dumped and "ana@example.com" not in dumped and "Bearer" not in dumped
    assert ctx.events.of_type("tool_called")[0].payload["status"] == 404


def test_typed_body_and_query():
    ctx = make_ctx()
    res = run(
        cfg(
            method="POST",
            url="${config:ORDERS_API}/stock/reserve",
            body={"sku": "{{ sku }}", "qty": "{{ qty }}"},
        ),
        make_input("x", {"sku": "MUG-LOGO", "qty": 2}),
        ctx,
    )
    assert res.value["status"] == 201 and res.value["body"]["qty"] == 2
    res = run(
        cfg(url="${config:ORDERS_API}/orders", query={"email": "{{ email }}"}),
        make_input("x", {"email": "ben@example.com"}),
        ctx,
    )
    assert [o["id"] for o in res.value["body"]] == [55120]
    everything = run(
        cfg(url="${config:ORDERS_API}/orders", query={"email": "{{ unknown }}"}), make_input("x"), ctx
    )
    assert len(everything.value["body"]) >= 10  # a missing value drops the parameter


def test_a_retried_turn_does_not_repeat_the_side_effect():
    lead = cfg(
        method="POST",
        url="${config:CRM_API}/leads",
        body={"name": "{{ name }}", "email": "{{ email }}", "company": "Acme"},
    )
    inp = make_input("x", {"name": "Jane", "email": "jane@acme.io"})
    ctx = make_ctx(conversation_id="c1", turn_id="t1")
    first = run(lead, inp, ctx).value["body"]
    again = run(lead, inp, make_ctx(conversation_id="c1", turn_id="t1")).value["body"]
    assert first == again
    assert len(httpx.get(f"{demo_api()}/leads").json()) == 1
    run(lead, inp, make_ctx(conversation_id="c1", turn_id="t2"))  # a new turn is a new request
    assert len(httpx.get(f"{demo_api()}/leads").json()) == 2


def test_idempotency_key_derivation():
    ctx = make_ctx(conversation_id="c", turn_id="t", node_id="pay")
    key = idempotency_key(ctx, "POST", "u", {"a": 1})
    assert key == idempotency_key(
        make_ctx(conversation_id="c", turn_id="t", node_id="pay"), "POST", "u", {"a": 1}
    )
    assert key != idempotency_key(
        make_ctx(conversation_id="c", turn_id="t2", node_id="pay"), "POST", "u", {"a": 1}
    )
    assert key != idempotency_key(ctx, "POST", "u", {"a": 2})


def test_retries_on_503_then_raises():
    httpx.post(f"{demo_api()}/_control", json={"fail": ["payments.charge"]})
    ctx = make_ctx()
    charge = cfg(
        method="POST",
        url="${config:PAYMENTS_API}/payments/charge",
        body={"amount": 5, "email": "a@b.co"},
        retries=2,
    )
    with pytest.raises(UnexpectedStatus) as err:
        run(charge, make_input("x"), ctx)
    assert err.value.status == 503 and "switched to fail" in str(err.value)
    assert [(e.payload["attempt"], e.payload["status"]) for e in ctx.events.of_type("tool_called")] == [
        (1, 503),
        (2, 503),
        (3, 503),
    ]


def test_expect_makes_a_409_a_success():
    res = run(
        cfg(method="POST", url="${config:ORDERS_API}/orders/48213/cancel", expect=[200, 409]),
        make_input("x"),
        make_ctx(),
    )
    assert res.value["ok"] is True and res.value["status"] == 409
    assert res.value["body"]["error"]["code"] == "order_not_cancellable"


def test_blocked_destination_raises():
    ctx = make_ctx()
    with pytest.raises(BlockedURL):
        run(cfg(url="http://169.254.169.254/latest/meta-data/"), make_input("x"), ctx)
    assert ctx.events.of_type("tool_called")[0].payload["error"] == "BlockedURL"


def test_undefined_reference_raises():
    with pytest.raises(ReferenceError_, match="NOPE"):
        run(cfg(url="${config:NOPE}/x"), make_input("x"), make_ctx())


def test_error_edge_in_the_engine():
    wf = workflow("""version: 1
id: http_err
name: HTTP error
nodes:
  - id: start
    type: start
  - id: lookup
    type: http_request
    config: {url: "${config:ORDERS_API}/orders/{{ message }}"}
  - id: found
    type: reply
    config: {text: "Order {{ message }} is {{ lookup.body.status }}."}
  - id: sorry
    type: reply
    config: {text: "I couldn't find that order."}
edges:
  - {from: start, to: lookup}
  - {from: lookup, to: found}
  - {from: lookup, to: sorry, when: error}
""")
    engine = make_engine()
    assert engine.run_turn(wf, "h1", "55120").reply == "Order 55120 is in_transit."
    r = engine.run_turn(wf, "h2", "424242")
    assert r.path == ["start", "lookup", "sorry"] and r.reply == "I couldn't find that order."


def test_outputs():
    assert NODE.can_fail and NODE.all_outputs(cfg(url="https://example.com")) == ["error"]


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "{{ host }}/orders"},
        {"url": "http://{{ host }}/orders"},
        {"url": "ftp://example.com/x"},
        {"url": "example.com/x"},
        {"url": "https://example.com/{{ a b }}"},
        {"url": "https://example.com/${env:HOME}"},
        {"url": "https://example.com", "method": "HEAD"},
        {"url": "https://example.com", "headers": {"Host": "evil"}},
        {"url": "https://example.com", "headers": {"bad header": "x"}},
        {"url": "https://example.com", "expect": []},
        {"url": "https://example.com", "expect": [700]},
        {"url": "https://example.com", "retries": 6},
        {"url": "https://example.com", "timeout_s": 0},
    ],
)
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        Config.model_validate(bad)
