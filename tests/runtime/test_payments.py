"""The payment-gateway interface's test provider: charges, refunds, and the faults it can be told."""

from __future__ import annotations

import itertools

import pytest

from runtime.payments import PaymentError, PaymentGateway, TestPaymentProvider


def provider() -> TestPaymentProvider:
    counter = itertools.count(1)
    return TestPaymentProvider(lambda prefix: f"{prefix}{next(counter)}")


def test_charge_then_refund_once():
    gw: PaymentGateway = provider()
    pay = gw.charge(amount=12.5, email="a@b.co")
    assert (pay["id"], pay["status"], pay["amount"]) == ("pay_1", "captured", 12.5)
    refunded = gw.refund("pay_1")
    assert refunded["status"] == "refunded" and refunded["refund_id"] == "re_2"
    assert gw.get("pay_1")["status"] == "refunded"
    with pytest.raises(PaymentError) as err:
        gw.refund("pay_1")
    assert (err.value.status, err.value.code) == (409, "already_refunded")
    with pytest.raises(PaymentError, match="No payment"):
        gw.refund("pay_404")


@pytest.mark.parametrize(("fault", "status", "code"), [("charge", 503, "injected_failure"),
                                                      ("decline", 402, "card_declined")])  # fmt: skip
def test_charge_faults(fault, status, code):
    gw = provider()
    gw.fail([fault])
    with pytest.raises(PaymentError) as err:
        gw.charge(amount=1, email="a@b.co")
    assert (err.value.status, err.value.code) == (status, code) and gw.payments == {}
    gw.fail([])
    assert gw.charge(amount=1, email="a@b.co")["status"] == "captured"


def test_refund_fault_leaves_the_payment_captured():
    gw = provider()
    pid = gw.charge(amount=1, email="a@b.co")["id"]
    gw.fail(["refund"])
    with pytest.raises(PaymentError) as err:
        gw.refund(pid)
    assert err.value.status == 503 and gw.get(pid)["status"] == "captured"


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown payment fault"):
        provider().fail(["explode"])
