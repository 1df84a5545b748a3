"""``/settings/plan``: the team's plan, usage against each limit, and what the next plan gives."""

from __future__ import annotations

import dataclasses

import reflex as rx

from app.components.forms import admin_only, page_header
from app.components.layout import template
from app.state import State
from core.errors import ServiceError
from tenants import plans
from tenants import service as accounts
from tenants.limits import UsageLine


@dataclasses.dataclass
class LimitRow:
    name: str = ""
    label: str = ""
    current: str = ""
    limit: str = ""
    percent: int = 0
    level: str = "ok"  # ok / warn / full


def _n(value: int) -> str:
    return f"{value:,}"


def limit_row(line: UsageLine) -> LimitRow:
    percent = min(100, round(100 * line.fraction))
    level = "full" if line.current >= line.limit else "warn" if percent >= 80 else "ok"
    return LimitRow(line.name, line.label, _n(line.current), f"{_n(line.limit)} {line.unit}", percent, level)


def upgrade_text(plan: plans.Plan) -> str:
    """What the next plan up gives, from the catalog (the same facts the 402 errors quote)."""
    nxt = plans.upgrades(plan)
    if not nxt:
        return f"{plan.title} is the largest plan. For higher limits, contact support."
    up = nxt[0]
    return (
        f"Upgrade to {up.title} (${up.monthly_price_usd:,.0f}/month) for {_n(up.messages_per_month)} "
        f"messages a month, {_n(up.workflows)} workflows, {_n(up.members)} members, "
        f"{_n(up.llm_tokens_per_month)} LLM tokens a month and {_n(up.requests_per_minute)} API "
        f"requests a minute."
    )


class PlanState(State):
    plan_title: str = ""
    price: str = ""
    rows: list[LimitRow] = []
    upgrade: str = ""
    rate: str = ""
    error: str = ""

    @rx.event
    def load(self) -> None:
        p = self.principal()
        if p is None or not p.allows("admin"):
            return
        try:
            status = accounts.plan_status(p)
        except ServiceError as e:
            self.error = e.message
            return
        plan = plans.get_plan(status["plan"])
        self.plan_title = plan.title
        self.price = f"${plan.monthly_price_usd:,.0f} / month"
        self.rows = [limit_row(line) for line in status["usage"]]
        self.upgrade = upgrade_text(plan)
        self.rate = (
            f"{_n(plan.requests_per_minute)} API requests a minute per team, "
            f"{_n(plan.requests_per_minute_per_key)} per key · model tiers: {', '.join(plan.model_tiers)} · "
            f"history kept {plan.retention_days} days"
        )


def usage_row(row: rx.Var[LimitRow]) -> rx.Component:
    return rx.flex(
        rx.flex(
            rx.text(row.label, size="2", weight="medium"),
            rx.spacer(),
            rx.text(
                row.current,
                " of ",
                row.limit,
                size="2",
                color=rx.color("gray", 11),
                custom_attrs={"data-testid": "usage-text"},
            ),
            align="center",
            width="100%",
        ),
        rx.progress(
            value=row.percent,
            max=100,
            color_scheme=rx.match(row.level, ("full", "red"), ("warn", "amber"), "indigo"),
            size="2",
        ),
        direction="column",
        gap="8px",
        custom_attrs={"data-limit": row.name},
    )


@template(nav="/settings/plan")
def page() -> rx.Component:
    return rx.flex(
        page_header("Plan and limits", "What your plan includes and how much of it this team uses."),
        admin_only(
            rx.flex(
                rx.card(
                    rx.flex(
                        rx.flex(
                            rx.text("Current plan", size="2", color=rx.color("gray", 10)),
                            rx.flex(
                                rx.heading(PlanState.plan_title, size="6", id="plan-name"),
                                rx.badge(PlanState.price, variant="soft", size="2"),
                                gap="10px",
                                align="center",
                            ),
                            rx.text(PlanState.rate, size="2", color=rx.color("gray", 11)),
                            direction="column",
                            gap="4px",
                        ),
                        justify="between",
                        align="center",
                        wrap="wrap",
                        gap="12px",
                    ),
                    width="100%",
                ),
                rx.card(
                    rx.flex(
                        rx.text("Usage this month", size="3", weight="bold"),
                        rx.foreach(PlanState.rows, usage_row),
                        direction="column",
                        gap="18px",
                    ),
                    width="100%",
                    id="usage",
                ),
                rx.callout(
                    PlanState.upgrade,
                    icon="rocket",
                    color_scheme="indigo",
                    variant="surface",
                    width="100%",
                    custom_attrs={"data-testid": "upgrade-path"},
                ),
                direction="column",
                gap="20px",
                width="100%",
            )
        ),
        direction="column",
        gap="24px",
    )
