"""Thompson sampling over tiers and the feature stores (in-memory and the real Redis)."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest

from runtime.bandit import InMemoryFeatureStore, RedisFeatureStore, TierBandit, cost_norm_from_prices

COST_NORM = {"cheap": 0.06, "strong": 1.0}


def simulate(p_success: dict[str, float], rounds: int, seed: int, store=None) -> list[str]:
    """Play ``rounds`` decisions against Bernoulli rewards; return the chosen tiers."""
    bandit = TierBandit(store or InMemoryFeatureStore(), cost_norm=COST_NORM, cost_weight=0.1)
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(rounds):
        c = bandit.choose("t1", "faq", rng=rng)
        chosen.append(c.tier)
        bandit.update("t1", "faq", c.tier, float(rng.random() < p_success[c.tier]))
    return chosen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converges_to_strong_when_it_is_worth_its_cost(seed: int) -> None:
    # Utility: cheap 0.50 - 0.006, strong 0.90 - 0.1 -> strong is better by ~0.3.
    chosen = simulate({"cheap": 0.5, "strong": 0.9}, 600, seed)
    assert chosen[-200:].count("strong") / 200 > 0.9


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converges_to_cheap_when_strong_is_barely_better(seed: int) -> None:
    # Utility: cheap 0.85 - 0.006 = 0.844, strong 0.88 - 0.1 = 0.78 -> cheap is better.
    chosen = simulate({"cheap": 0.85, "strong": 0.88}, 600, seed)
    assert chosen[-200:].count("cheap") / 200 > 0.85


def test_probabilities_are_a_distribution_and_include_the_choice() -> None:
    bandit = TierBandit(InMemoryFeatureStore(), cost_norm=COST_NORM)
    for seed in range(20):
        c = bandit.choose(
            "t", "i", prior_means={"cheap": 0.7, "strong": 0.8}, rng=np.random.default_rng(seed)
        )
        assert sum(c.probs.values()) == pytest.approx(1.0)
        assert c.probs[c.tier] > 0


def test_allowed_constrains_the_choice() -> None:
    bandit = TierBandit(InMemoryFeatureStore(), cost_norm=COST_NORM)
    for seed in range(20):
        c = bandit.choose(
            "t",
            "i",
            prior_means={"cheap": 0.1, "strong": 0.95},
            allowed=("cheap",),
            rng=np.random.default_rng(seed),
        )
        assert c.tier == "cheap"
        assert c.probs == {"cheap": 1.0, "strong": 0.0}


def test_prior_means_steer_the_first_decisions() -> None:
    bandit = TierBandit(InMemoryFeatureStore(), cost_norm=COST_NORM)
    rng = np.random.default_rng(0)
    low = bandit.choose("t", "i", prior_means={"cheap": 0.85, "strong": 0.85}, rng=rng).probs["strong"]
    high = bandit.choose("t", "i", prior_means={"cheap": 0.4, "strong": 0.85}, rng=rng).probs["strong"]
    assert high > low + 0.3


def test_update_moves_the_posterior_and_validates() -> None:
    store = InMemoryFeatureStore()
    bandit = TierBandit(store)
    a0, b0 = bandit.posterior("t", "i")["strong"]
    bandit.update("t", "i", "strong", 1.0)
    bandit.update("t", "i", "strong", 0.0)
    bandit.update("t", "i", "strong", 1.0)
    a1, b1 = bandit.posterior("t", "i")["strong"]
    assert (a1 - a0, b1 - b0) == (2.0, 1.0)
    assert bandit.posterior("t", "i")["cheap"] == (a0, b0)
    assert bandit.posterior("other", "i")["strong"] == (a0, b0)  # per tenant
    bandit.update("t", "i", "cheap", 7.0)  # clipped to 1
    assert bandit.counts("t", "i")["cheap"] == (1.0, 0.0)
    with pytest.raises(ValueError, match="unknown tier"):
        bandit.update("t", "i", "gold", 1.0)
    with pytest.raises(ValueError, match="NaN"):
        bandit.update("t", "i", "cheap", float("nan"))


def test_cost_norm_from_prices() -> None:
    assert cost_norm_from_prices({"cheap": 0.75, "strong": 12.5}) == {"cheap": 0.06, "strong": 1.0}
    assert cost_norm_from_prices({"cheap": 0.0}) == {"cheap": 0.0}


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=11, socket_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at 127.0.0.1:6379 is required in CI: {e}")
        pytest.skip(f"SKIPPED LOUDLY: no Redis at 127.0.0.1:6379 ({e})")
    yield client
    client.close()


@pytest.mark.redis
def test_redis_feature_store_round_trip(redis_client) -> None:
    prefix = f"flowdesk-test:{uuid.uuid4().hex}:"
    store = RedisFeatureStore(redis_client, prefix=prefix)
    try:
        assert store.get("k") == {}
        store.incr("k", {"a": 1.5, "b": 1.0})
        store.incr("k", {"a": 0.25})
        store.put("k", {"c": 3.0})
        assert store.get("k") == {"a": 1.75, "b": 1.0, "c": 3.0}
        # Another client (another worker) sees the same counters.
        other = RedisFeatureStore(redis_client.__class__(host="127.0.0.1", port=6379, db=11), prefix=prefix)
        assert other.get("k")["a"] == 1.75

        bandit = TierBandit(store, cost_norm=COST_NORM)
        bandit.update("tenant-a", "complaint", "strong", 1.0)
        bandit.update("tenant-a", "complaint", "cheap", 0.0)
        assert TierBandit(other).counts("tenant-a", "complaint") == {
            "cheap": (0.0, 1.0),
            "strong": (1.0, 0.0),
        }
        chosen = simulate({"cheap": 0.5, "strong": 0.9}, 300, seed=5, store=store)
        assert chosen[-100:].count("strong") > 85
    finally:
        keys = list(redis_client.scan_iter(match=prefix + "*"))
        if keys:
            redis_client.delete(*keys)
