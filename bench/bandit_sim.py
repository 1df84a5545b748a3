"""Tier-bandit simulator: known success probability per (intent, tier), real prices, regret vs oracle.

    python -m bench.bandit_sim [--steps 10000] [--seeds 5]

Each simulated message has an intent (drawn from a support traffic mix) and a complexity score
(drawn around the intent's mean; it feeds the cost policy's prior exactly as in the router). The
chosen tier answers well with a known probability, and the feedback (1 good / 0 bad) updates the
bandit. Utility = success - cost_weight * cost_norm(tier), the quantity the bandit maximises.
Prints JSON: per policy the quality, cost ($ per 1k messages), utility, strong-tier share, and
the cumulative expected regret against the per-intent oracle and the best fixed tier.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from core.settings import Settings
from runtime.bandit import InMemoryFeatureStore, TierBandit, cost_norm_from_prices
from runtime.router import CostPolicy

#: intent: (traffic share, P(good | cheap), P(good | strong), mean complexity score)
WORLD: dict[str, tuple[float, float, float, float]] = {
    "greeting": (0.10, 0.97, 0.98, 0.05),
    "faq": (0.18, 0.88, 0.93, 0.20),
    "track_order": (0.18, 0.92, 0.94, 0.15),
    "create_order": (0.10, 0.85, 0.92, 0.25),
    "cancel_order": (0.07, 0.88, 0.93, 0.30),
    "refund_return": (0.08, 0.78, 0.90, 0.40),
    "complaint": (0.08, 0.55, 0.85, 0.75),
    "technical_support": (0.10, 0.60, 0.86, 0.55),
    "sales_lead": (0.06, 0.70, 0.88, 0.40),
    "human_handoff": (0.05, 0.90, 0.91, 0.30),
}
TIERS = ("cheap", "strong")
#: Tokens of a typical support answer (prompt with retrieved context, completion).
PROMPT_TOKENS = 900
COMPLETION_TOKENS = 250
POLICIES = ("bandit", "bandit_flat_prior", "cost_policy_only", "always_cheap", "always_strong", "oracle")


def call_cost_usd(settings: Settings) -> dict[str, float]:
    return {
        t: (
            PROMPT_TOKENS * settings.TIERS[t].input_per_mtok
            + COMPLETION_TOKENS * settings.TIERS[t].output_per_mtok
        )
        / 1e6
        for t in TIERS
    }


def run_seed(seed: int, steps: int, settings: Settings, checkpoints: list[int]) -> dict[str, dict[str, Any]]:
    policy = CostPolicy()
    prices = {t: settings.TIERS[t].input_per_mtok + settings.TIERS[t].output_per_mtok for t in TIERS}
    cost_norm = cost_norm_from_prices(prices)
    lam = policy.cost_weight
    usd = call_cost_usd(settings)
    names = list(WORLD)
    share = np.array([WORLD[n][0] for n in names])
    share = share / share.sum()
    p = {n: {"cheap": WORLD[n][1], "strong": WORLD[n][2]} for n in names}
    util = {n: {t: p[n][t] - lam * cost_norm[t] for t in TIERS} for n in names}
    oracle = {n: max(TIERS, key=lambda t, n=n: util[n][t]) for n in names}

    # One message stream per seed, shared by every policy (common random numbers).
    rng = np.random.default_rng(seed)
    intents = rng.choice(len(names), size=steps, p=share)
    conc = 8.0
    means = np.array([WORLD[names[i]][3] for i in intents])
    complexity = rng.beta(means * conc, (1 - means) * conc)
    coin = rng.random(steps)  # the same outcome draw for whichever tier is chosen

    out: dict[str, dict[str, Any]] = {}
    for pol in POLICIES:
        bandit = TierBandit(InMemoryFeatureStore(), cost_norm=cost_norm, cost_weight=lam)
        brng = np.random.default_rng(seed + 1000)
        quality = cost = utility = regret = 0.0
        strong = explore = 0
        curve: dict[str, float] = {}
        for s in range(steps):
            intent = names[intents[s]]
            if pol in ("bandit", "bandit_flat_prior"):
                prior = policy.prior_means(float(complexity[s])) if pol == "bandit" else None
                choice = bandit.choose("sim", intent, prior_means=prior, rng=brng)
                tier = choice.tier
                greedy = max(TIERS, key=lambda t, c=choice: c.means[t] - lam * cost_norm[t])
                explore += tier != greedy
            elif pol == "cost_policy_only":
                prior = policy.prior_means(float(complexity[s]))
                tier = max(TIERS, key=lambda t, pr=prior: pr[t] - lam * cost_norm[t])
            elif pol == "oracle":
                tier = oracle[intent]
            else:
                tier = pol.removeprefix("always_")
            good = coin[s] < p[intent][tier]
            if pol.startswith("bandit"):
                bandit.update("sim", intent, tier, float(good))
            quality += p[intent][tier]
            cost += usd[tier]
            utility += util[intent][tier]
            regret += util[intent][oracle[intent]] - util[intent][tier]
            strong += tier == "strong"
            if s + 1 in checkpoints:
                curve[str(s + 1)] = regret
        out[pol] = {
            "quality": quality / steps,
            "usd_per_1k_messages": cost / steps * 1000,
            "utility": utility / steps,
            "strong_share": strong / steps,
            "regret_vs_oracle": curve,
            "exploration_rate": explore / steps if pol.startswith("bandit") else None,
        }
    best_fixed = max(("always_cheap", "always_strong"), key=lambda k: out[k]["utility"])
    for pol in POLICIES:
        o = out[pol]
        o["regret_vs_best_fixed"] = (out[best_fixed]["utility"] - o["utility"]) * steps
        o["quality_vs_always_strong"] = o["quality"] / out["always_strong"]["quality"]
        o["cost_vs_always_strong"] = o["usd_per_1k_messages"] / out["always_strong"]["usd_per_1k_messages"]
    out["_best_fixed"] = {"policy": best_fixed}
    out["_oracle_tiers"] = {"tiers": oracle}
    return out


def aggregate(runs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def ms(vals: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.fmean(vals), 5), "std": round(statistics.pstdev(vals), 5)}

    agg: dict[str, Any] = {}
    for pol in POLICIES:
        rows = [r[pol] for r in runs]
        a: dict[str, Any] = {}
        for k in ("quality", "usd_per_1k_messages", "utility", "strong_share", "regret_vs_best_fixed"):
            a[k] = ms([r[k] for r in rows])
        a["quality_vs_always_strong"] = ms([r["quality_vs_always_strong"] for r in rows])
        a["cost_vs_always_strong"] = ms([r["cost_vs_always_strong"] for r in rows])
        a["cumulative_regret_vs_oracle"] = {
            cp: ms([r["regret_vs_oracle"][cp] for r in rows]) for cp in rows[0]["regret_vs_oracle"]
        }
        if rows[0]["exploration_rate"] is not None:
            a["exploration_rate"] = ms([r["exploration_rate"] for r in rows])
        agg[pol] = a
    return agg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    settings = Settings()
    checkpoints = sorted({c for c in (100, 1000, 5000, args.steps) if c <= args.steps})
    runs = [run_seed(seed, args.steps, settings, checkpoints) for seed in range(args.seeds)]
    policy = CostPolicy()
    out = {
        "steps": args.steps,
        "seeds": args.seeds,
        "cost_weight": policy.cost_weight,
        "usd_per_call": {k: round(v, 6) for k, v in call_cost_usd(settings).items()},
        "tokens_per_call": {"prompt": PROMPT_TOKENS, "completion": COMPLETION_TOKENS},
        "world": {
            k: dict(zip(("share", "p_cheap", "p_strong", "complexity"), v, strict=True))
            for k, v in WORLD.items()
        },
        "oracle_tiers": runs[0]["_oracle_tiers"]["tiers"],
        "best_fixed_policy": runs[0]["_best_fixed"]["policy"],
        "policies": aggregate(runs),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
