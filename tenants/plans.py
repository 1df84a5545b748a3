"""The plan catalog (free / pro / business): data only, frozen at import time.

Every number a plan limits lives here and nowhere else; ``tenants/limits.py`` decides against
it, billing prices from it and the plan page lists it. ``PLANS`` is a read-only mapping in
upgrade order (cheapest first), and each :class:`Plan` is a frozen dataclass, so nothing at run
time can raise a tenant's limits by mutating the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

#: Concrete model tiers a deployment maps to models (``core.settings.DEFAULT_TIERS``).
#: ``auto`` is not one of them: the router resolves it to one of these per turn.
ModelTier = Literal["cheap", "strong"]
MODEL_TIERS: Final[tuple[str, ...]] = ("cheap", "strong")

#: The integer limits a plan sets, with the label and unit the plan page shows (in this order).
LIMIT_LABELS: Final = MappingProxyType(
    {
        "messages_per_month": ("Messages per month", "messages"),
        "workflows": ("Workflows", "workflows"),
        "members": ("Members (including pending invitations)", "members"),
        "llm_tokens_per_month": ("LLM tokens per month", "tokens"),
        "requests_per_minute": ("API requests per minute (tenant)", "requests/min"),
        "requests_per_minute_per_key": ("API requests per minute (per key)", "requests/min"),
        "knowledge_documents": ("Knowledge documents", "documents"),
        "retention_days": ("Event and checkpoint retention", "days"),
    }
)


class UnknownPlanError(ValueError):
    """A plan name that is not in the catalog (a 400 at the API, a usage error in the CLI)."""


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    title: str
    monthly_price_usd: Decimal
    messages_per_month: int
    workflows: int
    members: int
    llm_tokens_per_month: int
    #: API requests per minute for the whole tenant, all keys and sessions together.
    requests_per_minute: int
    #: API requests per minute for one API key: one leaked or runaway key can't use the tenant's all.
    requests_per_minute_per_key: int
    knowledge_documents: int
    #: How long run events and conversation checkpoints are kept (the runtime prunes older ones).
    retention_days: int
    model_tiers: tuple[str, ...]
    #: Turns of the tenant queued or running at once; more are refused (429) before enqueue.
    concurrent_turns: int = 8
    #: The RQ queue its turns go to (runtime.jobs.QUEUES: high is served first).
    queue: str = "default"

    def __post_init__(self) -> None:
        # The catalog is code, but a typo here would silently give tenants a 0 or negative limit.
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in LIMIT_LABELS and (not isinstance(value, int) or value < 1):
                raise ValueError(f"plan {self.name!r}: {f.name} must be a positive int, not {value!r}")
        if self.requests_per_minute_per_key > self.requests_per_minute:
            raise ValueError(f"plan {self.name!r}: per-key rate above the tenant rate")
        if not self.model_tiers or set(self.model_tiers) - set(MODEL_TIERS):
            raise ValueError(f"plan {self.name!r}: model_tiers must be a non-empty subset of {MODEL_TIERS}")
        if self.monthly_price_usd < 0:
            raise ValueError(f"plan {self.name!r}: negative price")

    def limit(self, name: str) -> int:
        """One integer limit by its field name (see ``LIMIT_LABELS``)."""
        if name not in LIMIT_LABELS:
            raise KeyError(f"{name!r} is not a plan limit; expected one of {', '.join(LIMIT_LABELS)}")
        value: int = getattr(self, name)
        return value


FREE: Final = Plan(
    name="free",
    title="Free",
    monthly_price_usd=Decimal("0"),
    messages_per_month=500,
    workflows=3,
    members=2,
    llm_tokens_per_month=200_000,
    requests_per_minute=60,
    requests_per_minute_per_key=30,
    knowledge_documents=20,
    retention_days=7,
    model_tiers=("cheap",),
    concurrent_turns=4,
    queue="low",
)
PRO: Final = Plan(
    name="pro",
    title="Pro",
    monthly_price_usd=Decimal("49"),
    messages_per_month=10_000,
    workflows=25,
    members=10,
    llm_tokens_per_month=5_000_000,
    requests_per_minute=600,
    requests_per_minute_per_key=300,
    knowledge_documents=500,
    retention_days=90,
    model_tiers=("cheap", "strong"),
    concurrent_turns=20,
    queue="default",
)
BUSINESS: Final = Plan(
    name="business",
    title="Business",
    monthly_price_usd=Decimal("299"),
    messages_per_month=100_000,
    workflows=200,
    members=50,
    llm_tokens_per_month=40_000_000,
    requests_per_minute=3_000,
    requests_per_minute_per_key=1_200,
    knowledge_documents=10_000,
    retention_days=365,
    model_tiers=("cheap", "strong"),
    concurrent_turns=100,
    queue="high",
)

#: The catalog, cheapest first (upgrade order). Read-only: item assignment raises TypeError.
PLANS: Final = MappingProxyType({p.name: p for p in (FREE, PRO, BUSINESS)})
PLAN_NAMES: Final[tuple[str, ...]] = tuple(PLANS)
DEFAULT_PLAN: Final = "free"


def get_plan(name: str) -> Plan:
    """The plan called ``name`` (exact, lower-case); :class:`UnknownPlanError` otherwise."""
    plan = PLANS.get(name) if isinstance(name, str) else None
    if plan is None:
        raise UnknownPlanError(f"unknown plan {name!r}; expected one of: {', '.join(PLAN_NAMES)}")
    return plan


def upgrades(plan: Plan) -> tuple[Plan, ...]:
    """The plans above ``plan`` in the catalog, nearest first."""
    position = PLAN_NAMES.index(get_plan(plan.name).name)
    return tuple(PLANS[n] for n in PLAN_NAMES[position + 1 :])
