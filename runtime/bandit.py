"""Thompson sampling over model tiers, per (tenant, intent), with its counters in a feature store.

Each tier has a Beta posterior over "the answer was good" (thumbs up = 1, thumbs down or a
handoff = 0). A decision samples each posterior, subtracts ``cost_weight * cost_norm[tier]``
(so the strong tier must be sufficiently better to be worth its price) and takes the best; the
probability of every action is estimated from extra Monte-Carlo draws and returned, because
off-policy evaluation (IPS/DR replay) of logged decisions needs it. The caller may pass
per-decision prior means (the cost policy's view of this message) and a set of allowed tiers
(a budget constraint).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

DEFAULT_TIERS: tuple[str, ...] = ("cheap", "strong")


class FeatureStore(Protocol):
    """Small per-key float counters (a hash per key)."""

    def get(self, key: str) -> dict[str, float]: ...

    def incr(self, key: str, deltas: Mapping[str, float]) -> None: ...

    def put(self, key: str, values: Mapping[str, float]) -> None: ...


class InMemoryFeatureStore:
    """Process-local store (tests, the embedded default, the simulator)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._data.get(key, {}))

    def incr(self, key: str, deltas: Mapping[str, float]) -> None:
        with self._lock:
            row = self._data.setdefault(key, {})
            for f, d in deltas.items():
                row[f] = row.get(f, 0.0) + float(d)

    def put(self, key: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self._data.setdefault(key, {}).update({f: float(v) for f, v in values.items()})


class RedisFeatureStore:
    """Counters in Redis hashes, shared by every worker; increments are atomic (HINCRBYFLOAT)."""

    def __init__(self, redis_client: Any, *, prefix: str = "flowdesk:features:") -> None:
        self.redis = redis_client
        self.prefix = prefix

    def _k(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str) -> dict[str, float]:
        raw = self.redis.hgetall(self._k(key))
        return {_s(f): float(_s(v)) for f, v in raw.items()}

    def incr(self, key: str, deltas: Mapping[str, float]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for f, d in deltas.items():
            pipe.hincrbyfloat(self._k(key), f, float(d))
        pipe.execute()

    def put(self, key: str, values: Mapping[str, float]) -> None:
        if values:
            self.redis.hset(self._k(key), mapping={f: repr(float(v)) for f, v in values.items()})


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def cost_norm_from_prices(prices: Mapping[str, float]) -> dict[str, float]:
    """Scale per-tier prices (any unit) to [0, 1] with the most expensive tier at 1."""
    top = max(prices.values()) if prices else 0.0
    return {t: (p / top if top > 0 else 0.0) for t, p in prices.items()}


@dataclass
class BanditChoice:
    tier: str
    #: Estimated probability of choosing each tier under this posterior (sums to 1).
    probs: dict[str, float]
    #: Posterior mean success per tier (prior pseudo-counts included).
    means: dict[str, float]
    #: Observed feedback count per tier for this (tenant, intent).
    counts: dict[str, float]


class TierBandit:
    """Thompson sampling over tiers with cost-aware utility ``theta - cost_weight * cost_norm``."""

    def __init__(
        self,
        store: FeatureStore,
        *,
        tiers: Sequence[str] = DEFAULT_TIERS,
        cost_norm: Mapping[str, float] | None = None,
        cost_weight: float = 0.1,
        prior_strength: float = 8.0,
        n_samples: int = 64,
    ) -> None:
        if not tiers:
            raise ValueError("at least one tier")
        self.store = store
        self.tiers = tuple(tiers)
        self.cost_norm = dict(cost_norm) if cost_norm is not None else {t: 0.0 for t in self.tiers}
        self.cost_weight = cost_weight
        self.prior_strength = prior_strength
        self.n_samples = max(1, n_samples)

    @staticmethod
    def key(tenant_id: str, intent: str) -> str:
        return f"bandit:{tenant_id}:{intent}"

    def counts(self, tenant_id: str, intent: str) -> dict[str, tuple[float, float]]:
        """Observed (successes, failures) per tier."""
        row = self.store.get(self.key(tenant_id, intent))
        return {t: (row.get(f"{t}.s", 0.0), row.get(f"{t}.f", 0.0)) for t in self.tiers}

    def posterior(
        self, tenant_id: str, intent: str, prior_means: Mapping[str, float] | None = None
    ) -> dict[str, tuple[float, float]]:
        """Beta (alpha, beta) per tier: prior pseudo-counts plus observed feedback."""
        return self._posterior(self.counts(tenant_id, intent), prior_means)

    def _posterior(
        self, counts: Mapping[str, tuple[float, float]], prior_means: Mapping[str, float] | None
    ) -> dict[str, tuple[float, float]]:
        out = {}
        m = self.prior_strength
        for t, (s, f) in counts.items():
            mu = 0.5 if prior_means is None else prior_means.get(t, 0.5)
            # Keep both Beta parameters positive and the prior never certain.
            mu = min(0.98, max(0.02, mu))
            out[t] = (m * mu + s, m * (1.0 - mu) + f)
        return out

    def choose(
        self,
        tenant_id: str,
        intent: str,
        *,
        prior_means: Mapping[str, float] | None = None,
        allowed: Sequence[str] | None = None,
        cost_weight: float | None = None,
        rng: np.random.Generator | None = None,
    ) -> BanditChoice:
        rng = rng if rng is not None else np.random.default_rng()
        lam = self.cost_weight if cost_weight is None else cost_weight
        counts = self.counts(tenant_id, intent)
        post = self._posterior(counts, prior_means)
        arms = [t for t in self.tiers if allowed is None or t in allowed] or [self.tiers[0]]
        alpha = np.array([post[t][0] for t in arms])
        beta = np.array([post[t][1] for t in arms])
        theta = rng.beta(alpha[:, None], beta[:, None], size=(len(arms), self.n_samples))
        cost = np.array([self.cost_norm.get(t, 0.0) for t in arms])[:, None]
        best = np.argmax(theta - lam * cost, axis=0)
        # Thompson's action is the first draw; the rest estimate every action's probability,
        # and include the first so the chosen action never gets probability 0.
        tier = arms[int(best[0])]
        freq = np.bincount(best, minlength=len(arms)) / self.n_samples
        probs = {t: 0.0 for t in self.tiers}
        probs.update({t: float(p) for t, p in zip(arms, freq, strict=True)})
        return BanditChoice(
            tier=tier,
            probs=probs,
            means={t: a / (a + b) for t, (a, b) in post.items()},
            counts={t: s + f for t, (s, f) in counts.items()},
        )

    def update(self, tenant_id: str, intent: str, tier: str, reward: float) -> None:
        """Record feedback: ``reward`` in [0, 1] (1 = good answer, 0 = bad or handed off)."""
        if tier not in self.tiers:
            raise ValueError(f"unknown tier {tier!r}; expected one of {self.tiers}")
        r = float(reward)
        if math.isnan(r):
            raise ValueError("reward is NaN")
        r = min(1.0, max(0.0, r))
        self.store.incr(self.key(tenant_id, intent), {f"{tier}.s": r, f"{tier}.f": 1.0 - r})


def record_feedback(tenant_id: str, intent: str, tier: str, reward: float) -> None:
    """A user's thumbs up/down on a routed turn, into the bandit the workers read (Redis).

    Only the counts change, so no Router (and no embedder) is needed in the web process.
    """
    from core.redis import get_redis

    TierBandit(RedisFeatureStore(get_redis())).update(tenant_id, intent, tier, reward)
