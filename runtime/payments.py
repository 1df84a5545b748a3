"""The payment-gateway interface, and the in-memory test provider the demo API charges through.

A real deployment plugs a provider (Stripe, Adyen...) in behind ``PaymentGateway``; workflows
never see it directly, they call the payments HTTP API (``/payments/charge``, ``/payments/refund``)
through ``http_request`` or ``saga`` steps. ``TestPaymentProvider`` can be told to fail: each
operation can be made unavailable (503, like a provider outage) or charges can be declined
(402, like a refused card), which is how the saga tests force a failure at the payment step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

#: What the test provider can be told to do wrong.
Fault = Literal["charge", "refund", "decline"]
FAULTS: frozenset[str] = frozenset({"charge", "refund", "decline"})


class PaymentError(Exception):
    """A refused payment operation: HTTP-like ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class PaymentGateway(Protocol):
    """What the payments API needs from a provider. Both calls either succeed or raise
    ``PaymentError``; callers make them idempotent (the API dedupes by ``Idempotency-Key``)."""

    def charge(self, *, amount: float, email: str, order_id: int | None = None) -> dict[str, Any]:
        """Capture ``amount``; returns ``{"id", "amount", "status": "captured", ...}``."""
        ...

    def refund(self, payment_id: str) -> dict[str, Any]:
        """Refund a captured payment in full; returns the payment with ``status: refunded``."""
        ...

    def get(self, payment_id: str) -> dict[str, Any] | None: ...


class TestPaymentProvider:
    """In-memory provider with a fault switch (``faults``: ``charge``/``refund`` answer 503,
    ``decline`` refuses charges with 402). Not thread-safe: the demo API calls it under its lock."""

    __test__ = False  # not a pytest test class

    def __init__(self, new_id: Callable[[str], str], seed: Iterable[dict[str, Any]] = ()) -> None:
        self._new_id = new_id
        self.payments: dict[str, dict[str, Any]] = {p["id"]: dict(p) for p in seed}
        self.faults: set[str] = set()

    def fail(self, faults: Iterable[str]) -> None:
        """Replace the faults to inject (empty: behave)."""
        wanted = set(faults)
        if unknown := wanted - FAULTS:
            raise ValueError(f"unknown payment fault(s) {sorted(unknown)}; known: {sorted(FAULTS)}")
        self.faults = wanted

    def _gate(self, op: str) -> None:
        if op in self.faults:
            raise PaymentError(503, "injected_failure", f"the payment provider is switched to fail {op}")

    def charge(self, *, amount: float, email: str, order_id: int | None = None) -> dict[str, Any]:
        self._gate("charge")
        if "decline" in self.faults:
            raise PaymentError(402, "card_declined", "The card was declined.")
        pid = self._new_id("pay_")
        payment = {"id": pid, "amount": amount, "status": "captured", "order_id": order_id, "email": email}
        self.payments[pid] = payment
        return dict(payment)

    def refund(self, payment_id: str) -> dict[str, Any]:
        self._gate("refund")
        payment = self.payments.get(payment_id)
        if payment is None:
            raise PaymentError(404, "payment_not_found", f"No payment {payment_id}.")
        if payment["status"] == "refunded":
            raise PaymentError(409, "already_refunded", f"Payment {payment_id} is already refunded.")
        payment["status"] = "refunded"
        payment["refund_id"] = self._new_id("re_")
        return dict(payment)

    def get(self, payment_id: str) -> dict[str, Any] | None:
        found = self.payments.get(payment_id)
        return dict(found) if found else None
