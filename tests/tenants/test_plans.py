"""tenants/plans.py: the catalog is complete, ordered, sane and immutable at run time."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal

import pytest

from tenants.plans import (
    BUSINESS,
    DEFAULT_PLAN,
    FREE,
    LIMIT_LABELS,
    MODEL_TIERS,
    PLAN_NAMES,
    PLANS,
    PRO,
    Plan,
    UnknownPlanError,
    get_plan,
    upgrades,
)


def test_catalog_is_ordered_cheapest_first():
    assert PLAN_NAMES == ("free", "pro", "business")
    assert list(PLANS) == ["free", "pro", "business"]
    assert [p.name for p in PLANS.values()] == ["free", "pro", "business"]
    prices = [p.monthly_price_usd for p in PLANS.values()]
    assert prices == sorted(prices) and len(set(prices)) == 3
    assert FREE.monthly_price_usd == Decimal("0")
    assert DEFAULT_PLAN in PLANS


@pytest.mark.parametrize("name", ["free", "pro", "business"])
def test_get_plan(name):
    plan = get_plan(name)
    assert isinstance(plan, Plan)
    assert plan is PLANS[name]
    assert plan.name == name


@pytest.mark.parametrize("bad", ["", "Free", "FREE", " free", "enterprise", "free\x00", None, 1])
def test_get_plan_unknown_is_a_clear_error(bad):
    with pytest.raises(UnknownPlanError) as err:
        get_plan(bad)
    assert isinstance(err.value, ValueError)  # the API maps it to 400
    assert "unknown plan" in str(err.value)
    assert "free, pro, business" in str(err.value)


def test_catalog_mapping_is_read_only():
    with pytest.raises(TypeError):
        PLANS["free"] = BUSINESS  # type: ignore[index]
    with pytest.raises(TypeError):
        del PLANS["free"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        PLANS.clear()  # type: ignore[attr-defined]
    assert PLANS["free"] is FREE


@pytest.mark.parametrize("plan", [FREE, PRO, BUSINESS])
def test_plans_are_frozen(plan):
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.workflows = 10**9  # type: ignore[misc]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        plan.extra = 1  # type: ignore[attr-defined]
    assert isinstance(plan.model_tiers, tuple)
    assert get_plan(plan.name).workflows == plan.workflows


def test_every_limit_is_a_positive_int_and_grows_with_the_plan():
    plans = list(PLANS.values())
    for name in LIMIT_LABELS:
        values = [p.limit(name) for p in plans]
        assert all(isinstance(v, int) and v > 0 for v in values), name
        assert values == sorted(values), f"{name} shrinks on an upgrade: {values}"
        assert values[0] < values[-1], f"{name} is the same on every plan"
    for lower, higher in itertools.pairwise(plans):
        assert set(lower.model_tiers) <= set(higher.model_tiers)


def test_realistic_numbers():
    assert (FREE.messages_per_month, FREE.workflows, FREE.members) == (500, 3, 2)
    assert FREE.llm_tokens_per_month == 200_000
    assert FREE.requests_per_minute == 60
    assert FREE.model_tiers == ("cheap",)
    assert "strong" in PRO.model_tiers
    for p in PLANS.values():
        assert p.requests_per_minute_per_key <= p.requests_per_minute
        assert set(p.model_tiers) <= set(MODEL_TIERS)
        assert p.retention_days >= 7


def test_upgrades():
    assert upgrades(FREE) == (PRO, BUSINESS)
    assert upgrades(PRO) == (BUSINESS,)
    assert upgrades(BUSINESS) == ()


def test_limit_by_name():
    assert FREE.limit("workflows") == 3
    with pytest.raises(KeyError, match="not a plan limit"):
        FREE.limit("monthly_price_usd")


def _fields(**overrides):
    base = {f.name: getattr(FREE, f.name) for f in dataclasses.fields(Plan)}
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "overrides",
    [
        {"workflows": 0},
        {"members": -1},
        {"messages_per_month": 1.5},
        {"requests_per_minute": 10, "requests_per_minute_per_key": 11},
        {"model_tiers": ()},
        {"model_tiers": ("cheap", "gold")},
        {"monthly_price_usd": Decimal("-1")},
    ],
)
def test_plan_refuses_nonsense(overrides):
    with pytest.raises(ValueError, match="plan 'free'"):
        Plan(**_fields(**overrides))
