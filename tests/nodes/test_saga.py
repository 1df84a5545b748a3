"""``saga`` against the demo API over real HTTP: each failure point undoes the completed steps
in reverse, a failed compensation takes the error output, and a re-run repeats nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from builder.graph import validate
from nodes.saga import NODE, Config, run
from runtime.http import GuardedClient
from tests.nodes import demo_api, make_ctx, make_engine, make_input, reset_demo, workflow
from tests.runtime.support import hangup_server

SKU, EMAIL = "HOODIE-GRY-L", "saga@example.com"
STOCK = 12  # the demo's seed stock of SKU

STEPS: list[dict[str, Any]] = [
    {
        "id": "reserve",
        "action": {
            "url": "${config:ORDERS_API}/stock/reserve",
            "body": {"sku": "{{ sku }}", "qty": "{{ qty }}"},
        },
        "compensate": {
            "url": "${config:ORDERS_API}/stock/release",
            "body": {"reservation_id": "{{ steps.reserve.body.reservation_id }}"},
        },
    },
    {
        "id": "charge",
        "action": {
            "url": "${config:PAYMENTS_API}/payments/charge",
            "body": {"amount": "{{ steps.reserve.body.amount }}", "email": "{{ email }}"},
        },
        "compensate": {
            "url": "${config:PAYMENTS_API}/payments/refund",
            "body": {"payment_id": "{{ steps.charge.body.payment_id }}"},
        },
    },
    {
        "id": "confirm",
        "action": {
            "url": "${config:ORDERS_API}/orders",
            "body": {
                "email": "{{ email }}",
                "items": [{"sku": "{{ sku }}", "qty": "{{ qty }}"}],
                "payment_id": "{{ steps.charge.body.payment_id }}",
            },
        },
    },
]


@pytest.fixture(autouse=True)
def fresh_demo():
    reset_demo()
    yield
    reset_demo()


def fail(*ops: str) -> None:
    httpx.post(f"{demo_api()}/_control", json={"fail": list(ops)}).raise_for_status()


def stock() -> int:
    return next(p["stock"] for p in httpx.get(f"{demo_api()}/products").json() if p["sku"] == SKU)


def payments() -> list[dict[str, Any]]:
    return httpx.get(f"{demo_api()}/payments", params={"email": EMAIL}).json()


def orders() -> list[dict[str, Any]]:
    return httpx.get(f"{demo_api()}/orders", params={"email": EMAIL}).json()


def place(ctx: Any = None, steps: list[dict[str, Any]] | None = None) -> tuple[Any, Any]:
    ctx = ctx or make_ctx()
    cfg = Config.model_validate({"steps": steps or STEPS})
    return run(cfg, make_input("yes", {"sku": SKU, "qty": 2, "email": EMAIL}), ctx), ctx


def events(ctx: Any, type_: str) -> list[tuple[Any, ...]]:
    return [(e.payload["step"], e.payload["status"]) for e in ctx.events.of_type(type_)]


def test_all_steps_succeed_and_later_steps_read_earlier_results():
    res, ctx = place()
    assert res.output is None and res.value["status"] == "ok" and res.value["failed"] is None
    steps = res.value["steps"]
    assert steps["reserve"]["body"]["amount"] == 98.0  # 2 x 49.00
    pid = steps["charge"]["body"]["payment_id"]
    assert [(p["id"], p["amount"], p["status"]) for p in payments()] == [(pid, 98.0, "captured")]
    (order,) = orders()
    assert order["id"] == steps["confirm"]["body"]["id"] and order["payment_id"] == pid
    assert stock() == STOCK - 2
    assert events(ctx, "saga_step") == [("reserve", "ok"), ("charge", "ok"), ("confirm", "ok")]
    assert all(e.payload["ms"] >= 0 and e.payload["node"] == "n" for e in ctx.events.of_type("saga_step"))
    assert not ctx.events.of_type("compensated") and not ctx.events.of_type("saga_failed")


def test_failure_at_reserve_undoes_nothing_and_charges_nothing():
    fail("stock.reserve")
    res, ctx = place()
    assert res.output == "compensated"
    assert res.value["failed"]["step"] == "reserve" and res.value["failed"]["status"] == 503
    assert res.value["compensated"] == [] and "charge" not in res.value["steps"]
    assert events(ctx, "saga_step") == [("reserve", "failed")]
    assert not ctx.events.of_type("compensated")
    (failed,) = ctx.events.of_type("saga_failed")
    assert failed.payload["step"] == "reserve" and failed.payload["outcome"] == "compensated"
    assert payments() == [] and orders() == [] and stock() == STOCK


def test_out_of_stock_is_a_failed_reserve_with_the_apis_message():
    res, _ = place(steps=[{**STEPS[0], "action": {**STEPS[0]["action"], "body": {"sku": SKU, "qty": 99}}}])
    assert res.output == "compensated"
    assert res.value["failed"]["status"] == 409 and res.value["failed"]["code"] == "out_of_stock"
    assert res.value["failed"]["message"] == f"Only {STOCK} of {SKU} left; 99 requested."


@pytest.mark.parametrize("fault", ["payments.charge", "payments.decline"])
def test_failure_at_charge_releases_the_stock(fault):
    fail(fault)
    res, ctx = place()
    assert res.output == "compensated" and res.value["failed"]["step"] == "charge"
    assert res.value["failed"]["status"] == (503 if fault == "payments.charge" else 402)
    assert res.value["compensated"] == ["reserve"]
    assert res.value["compensations"]["reserve"]["body"]["released"] is True
    assert events(ctx, "saga_step") == [("reserve", "ok"), ("charge", "failed")]
    assert events(ctx, "compensated") == [("reserve", "ok")]
    assert stock() == STOCK and payments() == [] and orders() == []


def test_failure_at_confirm_refunds_then_releases_in_reverse_order():
    fail("orders.create")
    res, ctx = place()
    assert res.output == "compensated" and res.value["failed"]["step"] == "confirm"
    assert res.value["compensated"] == ["charge", "reserve"]
    assert events(ctx, "compensated") == [("charge", "ok"), ("reserve", "ok")]
    kinds = [e.type for e in ctx.events.events if e.type in ("saga_step", "compensated", "saga_failed")]
    assert kinds == ["saga_step", "saga_step", "saga_step", "compensated", "compensated", "saga_failed"]
    (payment,) = payments()
    assert payment["status"] == "refunded" and payment["refund_id"]
    assert res.value["compensations"]["charge"]["body"]["refund_id"] == payment["refund_id"]
    assert stock() == STOCK and orders() == []


def test_a_failed_compensation_takes_the_error_output_and_still_undoes_the_rest():
    fail("orders.create", "payments.refund")
    res, ctx = place()
    assert res.output == "error" and res.value["status"] == "error"
    assert res.value["uncompensated"] == ["charge"] and res.value["compensated"] == ["reserve"]
    assert events(ctx, "compensated") == [("charge", "failed"), ("reserve", "ok")]
    (failed,) = ctx.events.of_type("saga_failed")
    assert failed.payload["outcome"] == "error" and failed.payload["uncompensated"] == ["charge"]
    assert [p["status"] for p in payments()] == ["captured"]  # a person must refund it
    assert stock() == STOCK
    assert "error" in NODE.all_outputs(Config.model_validate({"steps": STEPS}))


def test_a_rerun_of_the_same_turn_repeats_no_side_effect():
    ctx = make_ctx()
    first, _ = place(ctx)
    again, _ = place(ctx)
    assert again.value["steps"] == first.value["steps"]
    keys = [e.payload["idempotency_key"] for e in ctx.events.of_type("saga_step")]
    assert len(keys) == 6 and keys[:3] == keys[3:] and len(set(keys[:3])) == 3
    assert len(payments()) == 1 and len(orders()) == 1 and stock() == STOCK - 2
    other, _ = place(make_ctx(conversation_id=ctx.conversation_id))  # a new turn: a new order
    assert other.value["steps"]["confirm"]["body"]["id"] != first.value["steps"]["confirm"]["body"]["id"]
    assert len(orders()) == 2


def test_a_rerun_after_compensating_replays_the_undo_instead_of_failing():
    fail("orders.create")
    ctx = make_ctx()
    first, _ = place(ctx)
    again, _ = place(ctx)  # a worker crashed after the saga: the turn runs again
    assert first.output == again.output == "compensated"  # not "already refunded": replayed
    assert again.value["compensations"] == first.value["compensations"]
    undo = [e.payload["idempotency_key"] for e in ctx.events.of_type("compensated")]
    assert undo[:2] == undo[2:]
    assert [p["status"] for p in payments()] == ["refunded"] and stock() == STOCK


def test_a_bad_reference_fails_the_step_and_undoes_the_earlier_ones():
    steps = [STEPS[0], {**STEPS[1], "action": {**STEPS[1]["action"], "url": "${config:NOPE}/x"}}]
    res, ctx = place(steps=steps)
    assert res.output == "compensated" and res.value["failed"]["code"] == "ReferenceError_"
    assert events(ctx, "compensated") == [("reserve", "ok")] and stock() == STOCK


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([STEPS[0], STEPS[0]], "used twice"),
        ([STEPS[1], STEPS[0]], "reads steps.reserve, which has not run by then"),
        ([{"id": "x", "action": {"url": "https://e.com/{{ steps.x.id }}"}}], "steps.x"),
        ([{"id": "x", "action": {"url": "https://e.com/", "idempotency": False}}], "Idempotency-Key"),
        ([{"id": "Bad id", "action": {"url": "https://e.com/"}}], "pattern"),
        ([], "at least 1"),
    ],
)
def test_bad_configs_are_refused(steps, message):
    with pytest.raises(ValidationError, match=message):
        Config.model_validate({"steps": steps})


def test_a_compensation_may_read_its_own_step():
    Config.model_validate({"steps": [STEPS[0]]})  # release reads steps.reserve


def test_validation_knows_steps_are_the_sagas_own_but_checks_other_variables():
    cfg = Config.model_validate({"steps": STEPS})
    assert not any(p.startswith("steps.") for p in NODE.reads(cfg))
    assert {"sku", "qty", "email"} <= {p.split(".")[0] for p in NODE.reads(cfg)}
    wf = workflow(
        """
version: 1
id: s
name: S
nodes:
  - {id: start, type: start}
  - id: place
    type: saga
    config:
      steps:
        - id: a
          action: {url: 'https://e.com/{{ unknown_var }}'}
          compensate: {url: 'https://e.com/{{ steps.a.body.id }}'}
  - {id: ok, type: reply, config: {text: 'ok {{ place.steps.a.body.id }}'}}
  - {id: undone, type: reply, config: {text: 'undone at {{ place.failed.step }}'}}
  - {id: stuck, type: reply, config: {text: 'stuck'}}
edges:
  - {from: start, to: place}
  - {from: place, to: ok}
  - {from: place, to: undone, when: compensated}
  - {from: place, to: stuck, when: error}
"""
    )
    issues = validate(wf)
    assert [(i.code, i.node_id) for i in issues if i.severity == "error"] == [("UNDEFINED_VARIABLE", "place")]
    assert "unknown_var" in issues[0].message


def test_the_engine_routes_each_outcome_and_records_the_events():
    wf = workflow(
        """
version: 1
id: s
name: S
nodes:
  - {id: start, type: start}
  - {id: vars, type: set, config: {values: {sku: HOODIE-GRY-L, qty: 1, email: saga@example.com}}}
  - id: place
    type: saga
    config:
      steps:
        - id: reserve
          action:
            url: ${config:ORDERS_API}/stock/reserve
            body: {sku: '{{ sku }}', qty: '{{ qty }}'}
          compensate:
            url: ${config:ORDERS_API}/stock/release
            body: {reservation_id: '{{ steps.reserve.body.reservation_id }}'}
        - id: charge
          action:
            url: ${config:PAYMENTS_API}/payments/charge
            body: {amount: '{{ steps.reserve.body.amount }}', email: '{{ email }}'}
  - {id: ok, type: reply, config: {text: 'charged {{ place.steps.charge.body.amount }}'}}
  - {id: undone, type: reply, config: {text: 'undone after {{ place.failed.step }}'}}
edges:
  - {from: start, to: vars}
  - {from: vars, to: place}
  - {from: place, to: ok}
  - {from: place, to: undone, when: compensated}
"""
    )
    engine = make_engine()
    assert engine.run_turn(wf, "c1", "go").reply == "charged 49.0"
    fail("payments.charge")
    result = engine.run_turn(wf, "c2", "go")
    assert result.reply == "undone after charge"
    types = [e["type"] for e in result.events]
    assert types.count("saga_step") == 2 and types.count("compensated") == 1 and "saga_failed" in types
    assert stock() == STOCK - 1


def test_a_step_without_an_answer_is_marked_unknown_and_not_claimed_undone():
    with hangup_server() as silent:
        ctx = make_ctx(
            http=GuardedClient(allow_origins=[demo_api(), silent]),
            config_values={"ORDERS_API": demo_api(), "PAYMENTS_API": silent},
        )
        res, _ = place(ctx)
    assert res.output == "compensated" and res.value["failed"]["step"] == "charge"
    assert res.value["failed"]["unknown"] is True and res.value["failed"]["status"] is None
    assert res.value["compensated"] == ["reserve"] and stock() == STOCK
    (step,) = [e for e in ctx.events.of_type("saga_step") if e.payload["status"] == "failed"]
    assert step.payload["unknown"] is True
    fail("payments.charge")
    known, _ = place()  # an answer, even an error, is a known outcome
    assert known.value["failed"]["unknown"] is False
