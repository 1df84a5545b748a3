"""Plan-limit decisions: pure functions of (plan, usage) -> :class:`Decision`. No I/O.

The service layer counts the tenant's usage, calls one ``check_*`` function *before* the work
starts, and on a denial answers ``decision.http_status`` (402) with ``decision.code`` and
``decision.reason``. The reason names the plan, the limit and how to lift it, because it is shown
to the user as is.

Counting rule: a check asks "may ONE more be added?", so it allows while ``current + n <= limit``.
A tenant already above a limit (after a downgrade) is denied new work but keeps what it has.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Final, Literal

from tenants.plans import LIMIT_LABELS, MODEL_TIERS, Plan, upgrades

PLAN_LIMIT_STATUS: Final = 402  # Payment Required: the fix is a plan change, not a retry.


@dataclass(frozen=True, slots=True)
class Usage:
    """What a tenant uses now; the service layer counts it (the month is the billing month)."""

    messages_this_month: int = 0
    workflows: int = 0
    members: int = 0
    llm_tokens_this_month: int = 0
    knowledge_documents: int = 0
    #: Invitations sent and not yet accepted, revoked or expired: they hold a member seat.
    pending_invitations: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Usage.{f.name} must be a non-negative int, not {value!r}")

    @property
    def seats(self) -> int:
        """Members plus pending invitations: what the member limit counts."""
        return self.members + self.pending_invitations


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    code: Literal["ok", "plan_limit"]
    #: The plan limit checked (None for a model-tier decision, which is not a count).
    limit: int | None
    #: The usage counted against it, before this request.
    current: int | None
    #: 402 when denied, None when allowed (the caller answers as it would have).
    http_status: int | None
    plan: str
    #: The ``Plan`` field checked (``workflows``, ``members``...), or ``model_tiers``.
    limit_name: str
    #: The nearest plan that would allow it, or None (top plan: contact support).
    upgrade_to: str | None = None


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One row of the plan page: current usage against one limit."""

    name: str
    label: str
    unit: str
    current: int
    limit: int

    @property
    def fraction(self) -> float:
        return self.current / self.limit


def _n(value: int) -> str:
    return f"{value:,}"


def _count(value: int, noun: str) -> str:
    return f"{value:,} {noun}{'' if value == 1 else 's'}"


def _ok(plan: Plan, limit_name: str, limit: int | None, current: int | None, reason: str) -> Decision:
    return Decision(True, reason, "ok", limit, current, None, plan.name, limit_name)


def _deny(
    plan: Plan,
    limit_name: str,
    limit: int | None,
    current: int | None,
    problem: str,
    needed: int,
    alternative: str,
) -> Decision:
    """A 402 whose message ends with the ways out: the nearest plan whose limit fits ``needed``,
    then ``alternative`` (what the user can do without paying)."""
    target = next((p for p in upgrades(plan) if p.limit(limit_name) >= needed), None)
    if target is not None:
        unit = LIMIT_LABELS[limit_name][1]
        fix = f"upgrade to {target.name} for {_n(target.limit(limit_name))} {unit}"
    else:
        fix = "contact support to raise this limit"
    return Decision(
        False,
        f"{problem}; {fix}, or {alternative}.",
        "plan_limit",
        limit,
        current,
        PLAN_LIMIT_STATUS,
        plan.name,
        limit_name,
        target.name if target else None,
    )


def _check_count(
    plan: Plan, limit_name: str, current: int, adding: int, problem: str, alternative: str
) -> Decision:
    limit = plan.limit(limit_name)
    unit = LIMIT_LABELS[limit_name][1]
    if current + adding <= limit:
        return _ok(
            plan, limit_name, limit, current, f"{_n(current + adding)} of {_n(limit)} {unit} after this one"
        )
    return _deny(plan, limit_name, limit, current, problem, current + adding, alternative)


def check_create_workflow(plan: Plan, usage: Usage) -> Decision:
    problem = f"Your {plan.name} plan allows {_n(plan.workflows)} workflows (you have {_n(usage.workflows)})"
    return _check_count(plan, "workflows", usage.workflows, 1, problem, "delete a workflow first")


def check_invite_member(plan: Plan, usage: Usage) -> Decision:
    """Pending invitations hold a seat, so inviting can't overshoot the limit when they're accepted."""
    problem = (
        f"Your {plan.name} plan allows {_n(plan.members)} members, pending invitations included "
        f"(you have {_count(usage.members, 'member')} and "
        f"{_count(usage.pending_invitations, 'pending invitation')})"
    )
    alternative = "revoke a pending invitation" if usage.pending_invitations else "remove a member first"
    return _check_count(plan, "members", usage.seats, 1, problem, alternative)


def check_start_turn(plan: Plan, usage: Usage, *, estimated_tokens: int = 0) -> Decision:
    """One more chat message, and (if known) the LLM tokens the turn is expected to use.

    Tokens: with no estimate the turn is allowed while any allowance is left; with one, only if the
    estimate fits. Actual usage is metered afterwards, so a turn may end slightly over.
    """
    if isinstance(estimated_tokens, bool) or not isinstance(estimated_tokens, int) or estimated_tokens < 0:
        raise ValueError(f"estimated_tokens must be a non-negative int, not {estimated_tokens!r}")
    problem = (
        f"Your {plan.name} plan allows {_n(plan.messages_per_month)} messages per month "
        f"({_n(usage.messages_this_month)} used this month)"
    )
    messages = _check_count(
        plan, "messages_per_month", usage.messages_this_month, 1, problem, "wait until next month"
    )
    if not messages.allowed:
        return messages
    used, limit = usage.llm_tokens_this_month, plan.llm_tokens_per_month
    need = max(estimated_tokens, 1)  # no estimate: at least one token must be left
    if used + need <= limit:
        # Allowed: report the message count, the limit this check is primarily about.
        return dataclasses.replace(
            messages, reason=f"{messages.reason}; {_n(used)} of {_n(limit)} LLM tokens used"
        )
    needs = f", this turn needs about {_n(estimated_tokens)}" if estimated_tokens else ""
    problem = f"Your {plan.name} plan includes {_n(limit)} LLM tokens per month ({_n(used)} used{needs})"
    return _deny(plan, "llm_tokens_per_month", limit, used, problem, used + need, "wait until next month")


def check_add_document(plan: Plan, usage: Usage, *, count: int = 1) -> Decision:
    """``count`` documents added at once (a bulk upload is all or nothing)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, not {count!r}")
    adding = f", adding {_n(count)}" if count > 1 else ""
    problem = (
        f"Your {plan.name} plan allows {_n(plan.knowledge_documents)} knowledge documents "
        f"(you have {_n(usage.knowledge_documents)}{adding})"
    )
    return _check_count(
        plan, "knowledge_documents", usage.knowledge_documents, count, problem, "remove some first"
    )


def check_model_tier(plan: Plan, tier: str) -> Decision:
    """May this plan call models of ``tier``? ``auto`` is always allowed: the router resolves it to a
    concrete tier, which the runtime then checks (or narrows with :func:`allowed_tier`)."""
    if tier == "auto":
        return _ok(plan, "model_tiers", None, None, "auto resolves to a tier the plan includes")
    if tier not in MODEL_TIERS:
        raise ValueError(f"unknown model tier {tier!r}; expected auto or one of: {', '.join(MODEL_TIERS)}")
    if tier in plan.model_tiers:
        return _ok(plan, "model_tiers", None, None, f"the {plan.name} plan includes the {tier} tier")
    target = next((p for p in upgrades(plan) if tier in p.model_tiers), None)
    fix = f"upgrade to {target.name} to use it" if target else "contact support to enable it"
    return Decision(
        False,
        f"Your {plan.name} plan does not include the {tier} model tier "
        f"(it includes: {', '.join(plan.model_tiers)}); {fix}.",
        "plan_limit",
        None,
        None,
        PLAN_LIMIT_STATUS,
        plan.name,
        "model_tiers",
        target.name if target else None,
    )


def allowed_tier(plan: Plan, tier: str) -> str:
    """The tier to actually call: ``tier`` if the plan includes it, else the plan's cheapest.

    For ``auto`` turns the router's choice is narrowed rather than failing the customer's chat.
    """
    return tier if tier in plan.model_tiers else plan.model_tiers[0]


def usage_lines(plan: Plan, usage: Usage) -> tuple[UsageLine, ...]:
    """Current usage against each counted limit, in the plan page's order."""
    counted = (
        ("messages_per_month", usage.messages_this_month),
        ("workflows", usage.workflows),
        ("members", usage.seats),
        ("llm_tokens_per_month", usage.llm_tokens_this_month),
        ("knowledge_documents", usage.knowledge_documents),
    )
    return tuple(
        UsageLine(name, LIMIT_LABELS[name][0], LIMIT_LABELS[name][1], current, plan.limit(name))
        for name, current in counted
    )
