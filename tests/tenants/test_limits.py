"""tenants/limits.py: every decision below, at and above its boundary, and what it tells the user."""

from __future__ import annotations

import dataclasses

import pytest

from tenants.limits import (
    Decision,
    Usage,
    allowed_tier,
    check_add_document,
    check_create_workflow,
    check_invite_member,
    check_model_tier,
    check_start_turn,
    usage_lines,
)
from tenants.plans import BUSINESS, FREE, PLANS, PRO, Plan, upgrades

ALL_PLANS = list(PLANS.values())

# (limit field, Usage field, check) for the count checks that add exactly one.
COUNT_CHECKS = [
    ("workflows", "workflows", check_create_workflow),
    ("members", "members", check_invite_member),
    ("messages_per_month", "messages_this_month", check_start_turn),
    ("knowledge_documents", "knowledge_documents", check_add_document),
]


def assert_allowed(d: Decision, plan: Plan) -> None:
    assert d.allowed is True
    assert d.code == "ok"
    assert d.http_status is None
    assert d.plan == plan.name
    assert d.upgrade_to is None


def assert_denied(d: Decision, plan: Plan, limit_name: str, needed: int = 0) -> None:
    """``needed``: the count the request would reach; the suggested upgrade must fit it."""
    assert d.allowed is False
    assert d.code == "plan_limit"
    assert d.http_status == 402
    assert d.plan == plan.name
    assert d.limit_name == limit_name
    limit = plan.limit(limit_name) if limit_name != "model_tiers" else None
    assert d.limit == limit
    # The message names the plan and its limit, and how to lift it.
    assert d.reason.startswith(f"Your {plan.name} plan ")
    if limit is not None:
        assert f"{limit:,}" in d.reason
    fits = [p for p in upgrades(plan) if limit_name == "model_tiers" or p.limit(limit_name) >= needed]
    if fits:
        target = fits[0]
        assert d.upgrade_to == target.name
        if limit is not None:
            assert f"upgrade to {target.name} for {target.limit(limit_name):,}" in d.reason
        else:
            assert f"upgrade to {target.name}" in d.reason
    else:
        assert d.upgrade_to is None
        assert "contact support" in d.reason
    assert d.reason.endswith(".")


@pytest.mark.parametrize("plan", ALL_PLANS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    "limit_name,usage_field,check", COUNT_CHECKS, ids=lambda x: getattr(x, "__name__", x)
)
def test_count_checks_at_the_boundary(plan, limit_name, usage_field, check):
    limit = plan.limit(limit_name)
    below = check(plan, Usage(**{usage_field: limit - 2}))
    assert_allowed(below, plan)
    assert below.current == limit - 2
    at = check(plan, Usage(**{usage_field: limit - 1}))  # the last one that fits
    assert_allowed(at, plan)
    assert at.current == limit - 1
    for over in (limit, limit + 1, limit + 1000):  # full, and above it (after a downgrade)
        d = check(plan, Usage(**{usage_field: over}))
        assert_denied(d, plan, limit_name, needed=over + 1)
        assert d.current == over


def test_brief_example_message():
    d = check_create_workflow(FREE, Usage(workflows=3))
    assert d.reason == (
        "Your free plan allows 3 workflows (you have 3); upgrade to pro for 25 workflows, "
        "or delete a workflow first."
    )


def test_top_plan_says_contact_support():
    d = check_create_workflow(BUSINESS, Usage(workflows=BUSINESS.workflows))
    assert not d.allowed
    assert "Your business plan allows 200 workflows" in d.reason
    assert "contact support" in d.reason
    assert "upgrade" not in d.reason


def test_unrelated_usage_does_not_block():
    huge = 10**12
    usage = Usage(
        messages_this_month=huge, llm_tokens_this_month=huge, knowledge_documents=huge, members=huge
    )
    assert check_create_workflow(FREE, usage).allowed
    assert not check_invite_member(FREE, usage).allowed


@pytest.mark.parametrize(
    "members,pending,allowed",
    [(0, 0, True), (1, 0, True), (0, 1, True), (1, 1, False), (0, 2, False), (2, 0, False), (2, 3, False)],
)
def test_pending_invitations_hold_a_seat(members, pending, allowed):
    d = check_invite_member(FREE, Usage(members=members, pending_invitations=pending))
    assert d.allowed is allowed
    assert d.current == members + pending
    if not allowed:
        assert_denied(d, FREE, "members", needed=members + pending + 1)
        assert "pending invitations included" in d.reason
        assert ("revoke a pending invitation" in d.reason) is (pending > 0)


@pytest.mark.parametrize("plan", ALL_PLANS, ids=lambda p: p.name)
def test_start_turn_tokens_boundary(plan):
    limit = plan.llm_tokens_per_month
    # No estimate: allowed while at least one token is left.
    assert_allowed(check_start_turn(plan, Usage(llm_tokens_this_month=limit - 1)), plan)
    for used in (limit, limit + 1):
        d = check_start_turn(plan, Usage(llm_tokens_this_month=used))
        assert_denied(d, plan, "llm_tokens_per_month", needed=used + 1)
    # With an estimate: allowed only if it fits.
    used = limit - 500
    assert_allowed(check_start_turn(plan, Usage(llm_tokens_this_month=used), estimated_tokens=499), plan)
    assert_allowed(check_start_turn(plan, Usage(llm_tokens_this_month=used), estimated_tokens=500), plan)
    d = check_start_turn(plan, Usage(llm_tokens_this_month=used), estimated_tokens=501)
    assert_denied(d, plan, "llm_tokens_per_month", needed=used + 501)
    assert d.current == used
    assert "this turn needs about 501" in d.reason
    assert "LLM tokens per month" in d.reason


def test_start_turn_checks_messages_before_tokens():
    full = Usage(messages_this_month=FREE.messages_per_month, llm_tokens_this_month=FREE.llm_tokens_per_month)
    d = check_start_turn(FREE, full)
    assert d.limit_name == "messages_per_month"
    assert "500 messages per month" in d.reason
    assert "wait until next month" in d.reason


def test_start_turn_token_upgrade_must_fit_the_estimate():
    # An estimate larger than pro's whole allowance: the message points at business, which fits it.
    d = check_start_turn(FREE, Usage(), estimated_tokens=PRO.llm_tokens_per_month + 1)
    assert d.upgrade_to == "business"
    assert f"upgrade to business for {BUSINESS.llm_tokens_per_month:,}" in d.reason


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_start_turn_rejects_bad_estimates(bad):
    with pytest.raises(ValueError, match="estimated_tokens"):
        check_start_turn(FREE, Usage(), estimated_tokens=bad)


@pytest.mark.parametrize("plan", ALL_PLANS, ids=lambda p: p.name)
def test_add_documents_in_bulk(plan):
    limit = plan.knowledge_documents
    assert_allowed(check_add_document(plan, Usage(knowledge_documents=limit - 5), count=5), plan)
    d = check_add_document(plan, Usage(knowledge_documents=limit - 5), count=6)
    assert_denied(d, plan, "knowledge_documents", needed=limit + 1)
    assert "adding 6" in d.reason
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="count"):
            check_add_document(plan, Usage(), count=bad)


def test_model_tiers():
    assert_allowed(check_model_tier(FREE, "cheap"), FREE)
    d = check_model_tier(FREE, "strong")
    assert_denied(d, FREE, "model_tiers")
    assert "does not include the strong model tier" in d.reason
    assert "it includes: cheap" in d.reason
    assert (d.limit, d.current) == (None, None)
    for plan in (PRO, BUSINESS):
        assert_allowed(check_model_tier(plan, "strong"), plan)
        assert_allowed(check_model_tier(plan, "cheap"), plan)
    for plan in ALL_PLANS:
        assert_allowed(check_model_tier(plan, "auto"), plan)
    with pytest.raises(ValueError, match="unknown model tier"):
        check_model_tier(PRO, "gold")


def test_allowed_tier_narrows():
    assert allowed_tier(FREE, "strong") == "cheap"
    assert allowed_tier(FREE, "cheap") == "cheap"
    assert allowed_tier(PRO, "strong") == "strong"


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Usage)])
@pytest.mark.parametrize("bad", [-1, 1.5, True, None, "3"])
def test_usage_refuses_bad_counts(field, bad):
    with pytest.raises(ValueError, match=f"Usage.{field}"):
        Usage(**{field: bad})


def test_decisions_and_usage_are_frozen():
    d = check_create_workflow(FREE, Usage())
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.allowed = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Usage().workflows = 1  # type: ignore[misc]


def test_usage_lines():
    usage = Usage(
        messages_this_month=250, workflows=1, members=1, pending_invitations=1, knowledge_documents=5
    )
    lines = {line.name: line for line in usage_lines(FREE, usage)}
    assert list(lines) == [
        "messages_per_month",
        "workflows",
        "members",
        "llm_tokens_per_month",
        "knowledge_documents",
    ]
    assert (lines["messages_per_month"].current, lines["messages_per_month"].limit) == (250, 500)
    assert lines["messages_per_month"].fraction == 0.5
    assert lines["members"].current == 2  # pending invitations counted
    assert lines["members"].fraction == 1.0
    assert lines["llm_tokens_per_month"].current == 0
    assert all(line.label and line.unit for line in lines.values())
