"""The demo orders/CRM/payments API over real HTTP (uvicorn in a thread, and as a process)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from runtime.demo_api import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base():
    url, stop = serve_in_thread()
    yield url
    stop()


@pytest.fixture
def api(base):
    with httpx.Client(base_url=base, timeout=5) as c:
        c.post("/_control", json={"reset": True, "fail": []}).raise_for_status()
        yield c


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


def test_health(api):
    assert api.get("/health").json()["ok"] is True


@pytest.mark.parametrize(
    "oid, status",
    [
        (48213, "shipped"),
        (55120, "in_transit"),
        (10001, "delivered"),
        (77777, "processing"),
        (31337, "cancelled"),
    ],
)
def test_seeded_orders(api, oid, status):
    order = api.get(f"/orders/{oid}").json()
    assert order["id"] == oid and order["status"] == status
    assert order["items"] and order["email"] and order["total"] > 0


def test_shipped_order_has_carrier_tracking_and_eta(api):
    order = api.get("/orders/48213").json()
    assert order["carrier"] == "UPS" and order["tracking_number"] and order["eta"]


def test_seed_data_is_deterministic(base):
    url2, stop = serve_in_thread()
    try:
        a = httpx.get(f"{base}/orders/55120").json()
        b = httpx.get(f"{url2}/orders/55120").json()
        assert a == b
    finally:
        stop()


def test_unknown_order_is_404_with_json_error(api):
    r = api.get("/orders/99999")
    assert r.status_code == 404 and error_of(r)["code"] == "order_not_found"


def test_invalid_input_is_422_with_json_error(api):
    r = api.post("/orders", json={"email": "not-an-email", "items": [{"sku": "MUG-LOGO", "qty": 1}]})
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_request" and "email" in err["message"]
    assert api.get("/orders/abc").status_code == 422
    assert api.post("/orders", json={"email": "a@b.co", "items": []}).status_code == 422
    assert error_of(api.post("/leads", json={"name": "x"}))["code"] == "invalid_request"


def test_create_order_and_read_it_back(api):
    r = api.post("/orders", json={"email": "new@example.com", "items": [{"sku": "MUG-LOGO", "qty": 2}]})
    assert r.status_code == 201
    created = r.json()
    assert created["status"] == "placed" and created["total"] == 25.0
    assert api.get(f"/orders/{created['id']}").json()["email"] == "new@example.com"


def test_unknown_sku_is_refused(api):
    r = api.post("/orders", json={"email": "a@b.co", "items": [{"sku": "NOPE", "qty": 1}]})
    assert r.status_code == 422 and error_of(r)["code"] == "unknown_sku"


def test_idempotency_key_replays_without_a_second_effect(api):
    body = {"email": "idem@example.com", "items": [{"sku": "CAP-NVY", "qty": 1}]}
    r1 = api.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
    r2 = api.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
    assert r1.status_code == r2.status_code == 201 and r1.json() == r2.json()
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert len(api.get("/orders", params={"email": "idem@example.com"}).json()) == 1
    r3 = api.post("/orders", json=body, headers={"Idempotency-Key": "k-2"})
    assert r3.json()["id"] != r1.json()["id"]


def test_idempotency_key_reused_with_another_body_is_refused(api):
    api.post(
        "/leads", json={"name": "A", "email": "a@x.io", "company": "X"}, headers={"Idempotency-Key": "k"}
    )
    r = api.post(
        "/leads", json={"name": "B", "email": "b@x.io", "company": "X"}, headers={"Idempotency-Key": "k"}
    )
    assert r.status_code == 422 and error_of(r)["code"] == "idempotency_key_reused"
    assert len(api.get("/leads").json()) == 1


def test_cancel_processing_order(api):
    r = api.post("/orders/77777/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.get("/orders/77777").json()["status"] == "cancelled"


def test_cancel_shipped_order_is_409_with_a_clear_message(api):
    r = api.post("/orders/48213/cancel")
    err = error_of(r)
    assert r.status_code == 409 and err["code"] == "order_not_cancellable"
    assert "48213" in err["message"] and "shipped" in err["message"]


def test_change_order_while_processing_only(api):
    r = api.patch("/orders/42424", json={"address": "2 New Road", "items": [{"sku": "MUG-LOGO", "qty": 4}]})
    assert r.status_code == 200 and r.json()["address"] == "2 New Road" and r.json()["total"] == 50.0
    r = api.patch("/orders/48213", json={"address": "2 New Road"})
    assert r.status_code == 409 and error_of(r)["code"] == "order_not_changeable"


def test_return_and_refund_only_for_delivered(api):
    r = api.post("/orders/10001/return", json={"reason": "too big"})
    assert r.status_code == 200 and r.json()["status"] == "return_requested" and r.json()["return_id"]
    r = api.post("/orders/10001/refund")
    assert r.status_code == 200 and r.json()["amount"] == 89.0
    assert api.get("/orders/10001").json()["status"] == "refunded"
    assert api.post("/orders/55120/return").status_code == 409
    assert error_of(api.post("/orders/77777/refund"))["code"] == "order_not_refundable"


def test_products_catalog(api):
    products = {p["sku"]: p for p in api.get("/products").json()}
    assert products["MUG-LOGO"]["price"] == 12.5 and products["BAG-TOTE"]["stock"] == 0
    assert all({"sku", "name", "price", "stock"} <= set(p) for p in products.values())


@pytest.mark.parametrize(
    "q, sku",
    [
        ("mugs", "MUG-LOGO"),
        ("2 hoodies", "HOODIE-GRY-L"),
        ("t-shirts", "TSHIRT-BLK-M"),
        ("a tee", "TSHIRT-BLK-M"),
        ("hats", "CAP-NVY"),
        ("3 jackets", "JACKET-RAIN"),
        ("raincoat", "JACKET-RAIN"),
        ("tote bags", "BAG-TOTE"),
    ],
)
def test_product_search(api, q, sku):
    r = api.get("/products/search", params={"q": q})
    assert r.status_code == 200 and r.json()["sku"] == sku and {"name", "price", "stock"} <= set(r.json())


def test_product_search_not_found(api):
    r = api.get("/products/search", params={"q": "unicorns"})
    assert r.status_code == 404 and error_of(r)["code"] == "product_not_found"
    assert api.get("/products/search", params={"q": ""}).status_code == 422


def test_stock_reserve_and_release(api):
    def stock():
        return {p["sku"]: p["stock"] for p in api.get("/products").json()}["HOODIE-GRY-L"]

    before = stock()
    r = api.post("/stock/reserve", json={"sku": "HOODIE-GRY-L", "qty": 2})
    assert r.status_code == 201 and stock() == before - 2
    rid = r.json()["reservation_id"]
    assert api.post("/stock/release", json={"reservation_id": rid}).json()["released"] is True
    assert stock() == before
    again = api.post("/stock/release", json={"reservation_id": rid})
    assert again.status_code == 200 and again.json()["already"] is True and stock() == before
    assert api.post("/stock/release", json={"reservation_id": "res_nope"}).status_code == 404


def test_out_of_stock_is_409(api):
    r = api.post("/stock/reserve", json={"sku": "BAG-TOTE", "qty": 1})
    assert r.status_code == 409 and error_of(r)["code"] == "out_of_stock"


def test_concurrent_reservations_never_oversell(api, base):
    def reserve(_):
        return httpx.post(
            f"{base}/stock/reserve", json={"sku": "JACKET-RAIN", "qty": 1}, timeout=10
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(reserve, range(20)))
    assert codes.count(201) == 5 and codes.count(409) == 15


def test_payments_charge_and_refund(api):
    r = api.post("/payments/charge", json={"order_id": 20002, "email": "fay@example.com"})
    assert r.status_code == 201 and r.json()["amount"] == 12.5
    pid = r.json()["payment_id"]
    assert api.get("/orders/20002").json()["payment_id"] == pid
    assert api.post("/payments/refund", json={"payment_id": pid}).json()["status"] == "refunded"
    r = api.post("/payments/refund", json={"payment_id": pid})
    assert r.status_code == 409 and error_of(r)["code"] == "already_refunded"
    assert api.post("/payments/charge", json={"email": "a@b.co"}).status_code == 422
    assert api.post("/payments/charge", json={"amount": 10, "email": "a@b.co"}).status_code == 201


def test_saga_endpoints_link_reservation_payment_and_order(api):
    r = api.post("/stock/reserve", json={"sku": "MUG-LOGO", "qty": 3})
    assert r.status_code == 201 and r.json()["amount"] == 37.5  # what to charge for it
    rid = r.json()["reservation_id"]
    pay = api.post("/payments/charge", json={"amount": 37.5, "email": "Saga@Example.com"}).json()
    body = {"email": "saga@example.com", "items": [{"sku": "MUG-LOGO", "qty": 3}]}
    r = api.post("/orders", json={**body, "payment_id": pay["payment_id"], "reservation_id": rid})
    order = api.get(f"/orders/{r.json()['id']}").json()
    assert (order["payment_id"], order["reservation_id"]) == (pay["payment_id"], rid)
    (listed,) = api.get("/payments", params={"email": "saga@example.com"}).json()
    assert (listed["id"], listed["amount"], listed["status"]) == (pay["payment_id"], 37.5, "captured")


def test_the_payment_provider_can_decline_or_be_down(api):
    body = {"amount": 5, "email": "a@b.co"}
    api.post("/_control", json={"fail": ["payments.decline"]})
    r = api.post("/payments/charge", json=body)
    assert r.status_code == 402 and error_of(r)["code"] == "card_declined"
    api.post("/_control", json={"fail": []})
    pid = api.post("/payments/charge", json=body).json()["payment_id"]
    api.post("/_control", json={"fail": ["payments.refund"]})
    r = api.post("/payments/refund", json={"payment_id": pid})
    assert r.status_code == 503 and error_of(r)["code"] == "injected_failure"
    assert [p["status"] for p in api.get("/payments", params={"email": "a@b.co"}).json()] == ["captured"]


def test_control_switch_makes_a_step_fail_and_failures_are_not_replayed(api):
    assert api.post("/_control", json={"fail": ["payments.charge"]}).json() == {
        "failing": ["payments.charge"]
    }
    body = {"amount": 5, "email": "a@b.co"}
    r = api.post("/payments/charge", json=body, headers={"Idempotency-Key": "pay-1"})
    assert r.status_code == 503 and error_of(r)["code"] == "injected_failure"
    api.post("/_control", json={"fail": []})
    r = api.post("/payments/charge", json=body, headers={"Idempotency-Key": "pay-1"})
    assert r.status_code == 201  # the 503 was not stored under the key: the retry goes through
    assert api.post("/_control", json={"fail": ["nope.op"]}).status_code == 422


def test_reset_restores_seed_data(api):
    api.post("/orders/77777/cancel")
    api.post("/_control", json={"reset": True})
    assert api.get("/orders/77777").json()["status"] == "processing"


def test_leads(api):
    lead = {"name": "Jane Doe", "email": "jane@acme.io", "company": "Acme", "notes": "wants a demo"}
    r = api.post("/leads", json=lead)
    assert r.status_code == 201 and r.json()["id"].startswith("L-")
    assert [x["email"] for x in api.get("/leads").json()] == ["jane@acme.io"]


def test_tickets(api):
    r = api.post("/tickets", json={"subject": "Broken mug", "severity": "high", "text": "It arrived broken."})
    assert r.status_code == 201 and r.json()["status"] == "open"
    assert api.get("/tickets").json()[0]["severity"] == "high"
    assert (
        api.post("/tickets", json={"subject": "x", "severity": "apocalyptic", "text": "y"}).status_code == 422
    )


def test_runs_as_a_module():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.demo_api", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert (
                    httpx.get(f"http://127.0.0.1:{port}/orders/48213", timeout=1).json()["status"]
                    == "shipped"
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
