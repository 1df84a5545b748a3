"""The demo orders / CRM / payments API the shipped workflows call over real HTTP (DESIGN.md §7).

In memory, thread-safe, deterministic seed data; ``Idempotency-Key`` is honoured on every POST
(same key and path -> the stored response, no second effect; 5xx answers are not stored so a
retry can succeed). Errors are JSON ``{"error": {"code", "message"}}``.

``POST /_control`` is a demo-only switch for tests: ``{"fail": ["payments.charge"]}`` makes
those operations answer 503 (``payments.decline`` makes charges answer 402 card_declined),
``{"reset": true}`` restores the seed data. Payments go through ``runtime.payments``' gateway
interface, served here by its test provider (the ``payments.*`` switches are its faults).

Run it alone with ``python -m runtime.demo_api --port 8790``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.payments import PaymentError, TestPaymentProvider

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
CANCELLABLE = ("placed", "processing")
OPERATIONS = frozenset(
    f"{resource}.{verb}"
    for resource, verbs in {
        "orders": "get create update cancel return refund",
        "stock": "reserve release",
        "payments": "charge refund decline",
        "leads": "create",
        "tickets": "create",
    }.items()
    for verb in verbs.split()
)

PRODUCTS: dict[str, dict[str, Any]] = {
    "TSHIRT-BLK-M": {"name": "Black T-shirt (M)", "price": 19.90, "stock": 40},
    "HOODIE-GRY-L": {"name": "Grey hoodie (L)", "price": 49.00, "stock": 12},
    "MUG-LOGO": {"name": "Logo mug", "price": 12.50, "stock": 100},
    "CAP-NVY": {"name": "Navy cap", "price": 15.00, "stock": 25},
    "BOTTLE-STEEL": {"name": "Steel bottle", "price": 24.00, "stock": 30},
    "SOCKS-3PK": {"name": "Socks, 3 pairs", "price": 9.90, "stock": 60},
    "BAG-TOTE": {"name": "Tote bag", "price": 18.00, "stock": 0},
    "JACKET-RAIN": {"name": "Rain jacket", "price": 89.00, "stock": 5},
}


def _order(oid: int, status: str, email: str, items: list[tuple[str, int]], **extra: Any) -> dict:
    lines = [
        {"sku": s, "name": PRODUCTS[s]["name"], "qty": q, "price": PRODUCTS[s]["price"]} for s, q in items
    ]
    total = round(sum(li["qty"] * li["price"] for li in lines), 2)
    return {
        "id": oid,
        "status": status,
        "email": email,
        "items": lines,
        "total": total,
        "address": "1 Demo Street, Springfield",
        "created": "2025-05-02",
        **extra,
    }


def _seed_orders() -> dict[int, dict[str, Any]]:
    orders = [
        _order(
            48213,
            "shipped",
            "ana@example.com",
            [("HOODIE-GRY-L", 1), ("MUG-LOGO", 2)],
            carrier="UPS",
            tracking_number="1Z999AA10123456784",
            eta="2025-05-09",
        ),
        _order(
            55120,
            "in_transit",
            "ben@example.com",
            [("TSHIRT-BLK-M", 2)],
            carrier="DHL",
            tracking_number="JD014600006281234567",
            eta="2025-05-08",
        ),
        _order(
            10001,
            "delivered",
            "cara@example.com",
            [("JACKET-RAIN", 1)],
            carrier="FedEx",
            tracking_number="794698570011",
            delivered="2025-04-28",
            payment_id="pay_seed_10001",
        ),
        _order(77777, "processing", "dan@example.com", [("CAP-NVY", 1), ("SOCKS-3PK", 1)]),
        _order(31337, "cancelled", "eve@example.com", [("BOTTLE-STEEL", 1)]),
        _order(20002, "placed", "fay@example.com", [("MUG-LOGO", 1)]),
        _order(
            60606,
            "delivered",
            "gus@example.com",
            [("TSHIRT-BLK-M", 1), ("CAP-NVY", 1)],
            carrier="UPS",
            tracking_number="1Z999AA10123456785",
            delivered="2025-04-30",
            payment_id="pay_seed_60606",
        ),
        _order(
            88888,
            "shipped",
            "hal@example.com",
            [("BOTTLE-STEEL", 2)],
            carrier="USPS",
            tracking_number="9400111899223100012345",
            eta="2025-05-10",
        ),
        _order(42424, "processing", "ivy@example.com", [("HOODIE-GRY-L", 2)]),
        _order(
            12345,
            "delivered",
            "jon@example.com",
            [("SOCKS-3PK", 3)],
            carrier="DHL",
            tracking_number="JD014600006281230000",
            delivered="2025-04-20",
            payment_id="pay_seed_12345",
        ),
    ]
    return {o["id"]: o for o in orders}


#: Words customers use for the catalog's products.
SYNONYMS = {
    "tee": "tshirt",
    "shirt": "tshirt",
    "hat": "cap",
    "raincoat": "jacket",
    "coat": "jacket",
    "bag": "tote",
    "sweater": "hoodie",
    "sweatshirt": "hoodie",
    "cup": "mug",
    "flask": "bottle",
}


def _words(text: str) -> set[str]:
    out = set()
    for raw in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower()):
        w = raw.replace("-", "")
        if w.isdigit():  # quantities ("3 jackets") say nothing about the product
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(SYNONYMS.get(w, w))
    return out


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Line(_In):
    sku: str = Field(min_length=1, max_length=40)
    qty: int = Field(ge=1, le=100)


class NewOrder(_In):
    email: str = Field(pattern=EMAIL, max_length=200)
    items: list[Line] = Field(min_length=1, max_length=50)
    address: str | None = Field(default=None, max_length=300)
    #: Set by the create_order saga: the payment and stock reservation this order consumes.
    payment_id: str | None = Field(default=None, max_length=40)
    reservation_id: str | None = Field(default=None, max_length=40)


class OrderChange(_In):
    address: str | None = Field(default=None, min_length=3, max_length=300)
    items: list[Line] | None = Field(default=None, min_length=1, max_length=50)


class Reason(_In):
    reason: str | None = Field(default=None, max_length=1000)


class Reserve(_In):
    sku: str = Field(min_length=1, max_length=40)
    qty: int = Field(ge=1, le=100)


class Release(_In):
    reservation_id: str = Field(min_length=1, max_length=40)


class Charge(_In):
    order_id: int | None = None
    amount: float | None = Field(default=None, gt=0, le=100_000)
    email: str = Field(pattern=EMAIL, max_length=200)


class PaymentRef(_In):
    payment_id: str = Field(min_length=1, max_length=40)


class Lead(_In):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(pattern=EMAIL, max_length=200)
    company: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    notes: str | None = Field(default=None, max_length=2000)
    source: str | None = Field(default=None, max_length=100)


class Ticket(_In):
    subject: str = Field(min_length=1, max_length=300)
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    text: str = Field(min_length=1, max_length=5000)
    email: str | None = Field(default=None, pattern=EMAIL, max_length=200)


class Control(_In):
    fail: list[str] | None = None
    reset: bool = False


class DemoStore:
    """All demo data behind one lock; every mutation is a method here."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.orders = _seed_orders()
            self.stock = {sku: p["stock"] for sku, p in PRODUCTS.items()}
            self.reservations: dict[str, dict[str, Any]] = {}
            seed = [
                {
                    "id": o["payment_id"],
                    "amount": o["total"],
                    "status": "captured",
                    "order_id": o["id"],
                    "email": o["email"],
                }
                for o in self.orders.values()
                if "payment_id" in o
            ]
            self.gateway = TestPaymentProvider(self._next, seed)
            self.payments = self.gateway.payments
            self.leads: list[dict[str, Any]] = []
            self.tickets: list[dict[str, Any]] = []
            self.failing: set[str] = set()
            self.idem: dict[tuple[str, str], tuple[str, int, Any]] = {}
            self.counter = 0

    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:04d}"

    def gate(self, op: str) -> None:
        if op in self.failing:
            raise ApiError(503, "injected_failure", f"{op} is switched to fail (POST /_control)")

    def once(
        self, key: str | None, path: str, payload: Any, fn: Callable[[], tuple[int, Any]]
    ) -> JSONResponse:
        """Run ``fn`` once per (Idempotency-Key, path); replay the stored answer afterwards."""
        fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        with self.lock:
            if key and (key, path) in self.idem:
                fp, status, body = self.idem[(key, path)]
                if fp != fingerprint:
                    return _err(
                        422, "idempotency_key_reused", "this Idempotency-Key was used with another body"
                    )
                return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})
            try:
                status, body = fn()
            except ApiError as e:
                status, body = e.status, {"error": {"code": e.code, "message": e.message}}
            if key and status < 500:
                self.idem[(key, path)] = (fingerprint, status, copy.deepcopy(body))
            return JSONResponse(body, status_code=status)

    def order(self, oid: int) -> dict[str, Any]:
        if oid not in self.orders:
            raise ApiError(404, "order_not_found", f"There is no order {oid}.")
        return self.orders[oid]

    def lines(self, items: list[Line]) -> list[dict[str, Any]]:
        unknown = [li.sku for li in items if li.sku not in PRODUCTS]
        if unknown:
            raise ApiError(422, "unknown_sku", f"Unknown product(s): {', '.join(unknown)}.")
        return [
            {
                "sku": li.sku,
                "name": PRODUCTS[li.sku]["name"],
                "qty": li.qty,
                "price": PRODUCTS[li.sku]["price"],
            }
            for li in items
        ]


def _total(lines: list[dict[str, Any]]) -> float:
    return round(sum(li["qty"] * li["price"] for li in lines), 2)


def create_app(store: DemoStore | None = None) -> FastAPI:
    db = store or DemoStore()
    app = FastAPI(title="flowdesk demo API", version="1")
    app.state.store = db
    IdemKey = Header(default=None, alias="Idempotency-Key", max_length=200)

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = first.get("msg", "invalid input")
        if first.get("type") == "string_pattern_mismatch":
            msg = "must be a valid email address" if "email" in where else "has an invalid format"
        return _err(422, "invalid_request", f"{where or 'request'}: {msg}")

    @app.exception_handler(StarletteHTTPException)
    def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _err(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    @app.exception_handler(ApiError)
    def _api(_: Request, exc: ApiError) -> JSONResponse:
        return _err(exc.status, exc.code, exc.message)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "service": "flowdesk-demo-api"}

    @app.get("/products")
    def products() -> list[dict[str, Any]]:
        with db.lock:
            return [{"sku": s, **p, "stock": db.stock[s]} for s, p in PRODUCTS.items()]

    @app.get("/products/search")
    def product_search(q: str = Query(min_length=1, max_length=200)) -> dict[str, Any]:
        """The best-matching product for a phrase ("2 hoodies", "a tee"); 404 when none matches."""
        wanted = _words(q)
        scored = [
            (len(wanted & _words(f"{p['name']} {s.replace('-', ' ')}")), s) for s, p in PRODUCTS.items()
        ]
        best, sku = max(scored, key=lambda x: x[0])  # max keeps the first of equal scores
        if not best:
            raise ApiError(404, "product_not_found", f"We don't sell {q!r}.")
        with db.lock:
            return {"sku": sku, **PRODUCTS[sku], "stock": db.stock[sku]}

    @app.get("/orders")
    def list_orders(email: str | None = None) -> list[dict[str, Any]]:
        with db.lock:
            found = [o for o in db.orders.values() if email is None or o["email"] == email.lower()]
            return copy.deepcopy(found)

    @app.get("/orders/{order_id}")
    def get_order(order_id: int) -> dict[str, Any]:
        with db.lock:
            db.gate("orders.get")
            return copy.deepcopy(db.order(order_id))

    @app.post("/orders", status_code=201)
    def create_order(body: NewOrder, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("orders.create")
            lines = db.lines(body.items)
            oid = max(90000, *db.orders) + 1
            db.orders[oid] = {
                "id": oid,
                "status": "placed",
                "email": body.email.lower(),
                "items": lines,
                "total": _total(lines),
                "address": body.address or "",
                "created": "2025-05-05",
            }
            for ref in ("payment_id", "reservation_id"):
                if getattr(body, ref):
                    db.orders[oid][ref] = getattr(body, ref)
            return 201, {"id": oid, "status": "placed", "total": db.orders[oid]["total"]}

        return db.once(key, "/orders", body.model_dump(), do)

    @app.patch("/orders/{order_id}")
    def change_order(order_id: int, body: OrderChange) -> dict[str, Any]:
        with db.lock:
            db.gate("orders.update")
            order = db.order(order_id)
            if order["status"] not in CANCELLABLE:
                raise ApiError(
                    409,
                    "order_not_changeable",
                    f"Order {order_id} is {order['status']} and can no longer be changed.",
                )
            if body.items is not None:
                order["items"] = db.lines(body.items)
                order["total"] = _total(order["items"])
            if body.address is not None:
                order["address"] = body.address
            return copy.deepcopy(order)

    @app.post("/orders/{order_id}/cancel")
    def cancel_order(order_id: int, body: Reason | None = None, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("orders.cancel")
            order = db.order(order_id)
            if order["status"] not in CANCELLABLE:
                hint = (
                    " You can return it once it is delivered."
                    if order["status"] in ("shipped", "in_transit")
                    else ""
                )
                raise ApiError(
                    409,
                    "order_not_cancellable",
                    f"Order {order_id} is {order['status']} and can no longer be cancelled.{hint}",
                )
            order["status"] = "cancelled"
            return 200, {"id": order_id, "status": "cancelled", "refund_amount": order["total"]}

        return db.once(key, f"/orders/{order_id}/cancel", body and body.model_dump(), do)

    @app.post("/orders/{order_id}/return")
    def return_order(order_id: int, body: Reason | None = None, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("orders.return")
            order = db.order(order_id)
            if order["status"] != "delivered":
                raise ApiError(
                    409,
                    "order_not_returnable",
                    f"Order {order_id} is {order['status']}; only delivered orders can be returned.",
                )
            order["status"] = "return_requested"
            rma = db._next("rma_")
            return 200, {
                "id": order_id,
                "status": "return_requested",
                "return_id": rma,
                "label_url": f"/returns/{rma}/label.pdf",
            }

        return db.once(key, f"/orders/{order_id}/return", body and body.model_dump(), do)

    @app.post("/orders/{order_id}/refund")
    def refund_order(order_id: int, body: Reason | None = None, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("orders.refund")
            order = db.order(order_id)
            if order["status"] not in ("delivered", "return_requested"):
                raise ApiError(
                    409,
                    "order_not_refundable",
                    f"Order {order_id} is {order['status']}; only delivered orders can be refunded.",
                )
            order["status"] = "refunded"
            return 200, {
                "id": order_id,
                "status": "refunded",
                "refund_id": db._next("re_"),
                "amount": order["total"],
            }

        return db.once(key, f"/orders/{order_id}/refund", body and body.model_dump(), do)

    @app.post("/stock/reserve", status_code=201)
    def reserve(body: Reserve, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("stock.reserve")
            if body.sku not in PRODUCTS:
                raise ApiError(404, "unknown_sku", f"Unknown product {body.sku}.")
            if db.stock[body.sku] < body.qty:
                raise ApiError(
                    409,
                    "out_of_stock",
                    f"Only {db.stock[body.sku]} of {body.sku} left; {body.qty} requested.",
                )
            db.stock[body.sku] -= body.qty
            rid = db._next("res_")
            db.reservations[rid] = {"sku": body.sku, "qty": body.qty, "released": False}
            amount = round(PRODUCTS[body.sku]["price"] * body.qty, 2)  # what to charge for it
            return 201, {"reservation_id": rid, "sku": body.sku, "qty": body.qty, "amount": amount}

        return db.once(key, "/stock/reserve", body.model_dump(), do)

    @app.post("/stock/release")
    def release(body: Release, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("stock.release")
            res = db.reservations.get(body.reservation_id)
            if res is None:
                raise ApiError(404, "reservation_not_found", f"No reservation {body.reservation_id}.")
            already = res["released"]
            if not already:  # releasing twice is harmless: compensations may repeat
                db.stock[res["sku"]] += res["qty"]
                res["released"] = True
            return 200, {"reservation_id": body.reservation_id, "released": True, "already": already}

        return db.once(key, "/stock/release", body.model_dump(), do)

    @app.post("/payments/charge", status_code=201)
    def charge(body: Charge, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            if body.order_id is None and body.amount is None:
                raise ApiError(422, "invalid_request", "give order_id or amount")
            amount = body.amount
            if body.order_id is not None:
                amount = db.order(body.order_id)["total"]
            try:
                pay = db.gateway.charge(amount=float(amount or 0), email=body.email, order_id=body.order_id)
            except PaymentError as e:
                raise ApiError(e.status, e.code, e.message) from None
            if body.order_id is not None:
                db.orders[body.order_id]["payment_id"] = pay["id"]
            return 201, {"payment_id": pay["id"], "amount": amount, "status": "captured"}

        return db.once(key, "/payments/charge", body.model_dump(), do)

    @app.post("/payments/refund")
    def refund_payment(body: PaymentRef, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            try:
                pay = db.gateway.refund(body.payment_id)
            except PaymentError as e:
                raise ApiError(e.status, e.code, e.message) from None
            return 200, {
                "payment_id": pay["id"],
                "refund_id": pay["refund_id"],
                "amount": pay["amount"],
                "status": "refunded",
            }

        return db.once(key, "/payments/refund", body.model_dump(), do)

    @app.get("/payments")
    def list_payments(email: str | None = None) -> list[dict[str, Any]]:
        with db.lock:
            found = [p for p in db.payments.values() if email is None or p["email"].lower() == email.lower()]
            return copy.deepcopy(found)

    @app.post("/leads", status_code=201)
    def create_lead(body: Lead, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("leads.create")
            lead = {"id": f"L-{1001 + len(db.leads)}", **body.model_dump(), "created": time.time()}
            db.leads.append(lead)
            return 201, lead

        return db.once(key, "/leads", body.model_dump(), do)

    @app.get("/leads")
    def list_leads() -> list[dict[str, Any]]:
        with db.lock:
            return copy.deepcopy(db.leads)

    @app.post("/tickets", status_code=201)
    def create_ticket(body: Ticket, key: str | None = IdemKey) -> JSONResponse:
        def do() -> tuple[int, Any]:
            db.gate("tickets.create")
            ticket = {"id": f"T-{1001 + len(db.tickets)}", **body.model_dump(), "status": "open"}
            db.tickets.append(ticket)
            return 201, ticket

        return db.once(key, "/tickets", body.model_dump(), do)

    @app.get("/tickets")
    def list_tickets() -> list[dict[str, Any]]:
        with db.lock:
            return copy.deepcopy(db.tickets)

    @app.post("/_control")
    def control(body: Control) -> dict[str, Any]:
        """Demo-only test switch: make operations fail with 503, or restore the seed data."""
        unknown = sorted(set(body.fail or ()) - set(OPERATIONS))
        if unknown:
            raise ApiError(
                422, "unknown_operation", f"unknown operation(s) {unknown}; known: {sorted(OPERATIONS)}"
            )
        with db.lock:
            if body.reset:
                db.reset()
            if body.fail is not None:
                db.failing = set(body.fail)
                db.gateway.fail(op.split(".", 1)[1] for op in db.failing if op.startswith("payments."))
            return {"failing": sorted(db.failing)}

    return app


def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve a fresh demo API with uvicorn in a daemon thread; ``port=0`` picks a free port."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host=host, port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo API did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)

    return f"http://{host}:{bound}", stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the flowdesk demo orders/CRM/payments API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
