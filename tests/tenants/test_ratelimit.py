"""tenants/ratelimit.py against the real Redis (threads and separate processes at the boundary)
and the in-memory backend, which must give the same answers in one process."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

import tenants.ratelimit as ratelimit_module
from tenants.ratelimit import (
    SCOPE_API_KEY,
    SCOPE_TENANT,
    WINDOW_S,
    RateLimiter,
    RateResult,
    headers,
)
from tests.conftest import REDIS_URL

LIMIT = 20
CONCURRENT = 50
TRIALS = 5


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"fdtest:rl:{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_limiter(redis_prefix: str) -> Iterator[RateLimiter]:
    limiter = RateLimiter(REDIS_URL, key_prefix=redis_prefix)
    yield limiter
    limiter.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    """Both backends: every test using it must hold on each."""
    if request.param == "memory":
        return RateLimiter(None)
    return request.getfixturevalue("redis_limiter")


def burst(limiter: RateLimiter, scope: str, key: str, n: int = CONCURRENT) -> list[RateResult]:
    """``n`` hits released together from ``n`` threads."""
    gate = threading.Barrier(n)

    def one(_: int) -> RateResult:
        gate.wait(timeout=30)
        return limiter.hit(scope, key, LIMIT)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def check_burst(results: list[RateResult], *, exact_remaining: bool) -> None:
    before = time.time()
    allowed = [r for r in results if r.allowed]
    denied = [r for r in results if not r.allowed]
    assert len(allowed) == LIMIT, f"{len(allowed)} allowed at a limit of {LIMIT}"
    assert len(denied) == len(results) - LIMIT
    for r in results:
        assert r.limit == LIMIT
        assert 0 <= r.remaining < LIMIT
        # Every hit of the burst is in the window, so it resets about a minute from now.
        assert before - 5 < r.reset_epoch <= before + WINDOW_S + 1
    for r in allowed:
        assert r.retry_after_s == 0
    for r in denied:
        assert r.remaining == 0
        assert 1 <= r.retry_after_s <= WINDOW_S
    # The request that took the last slot saw the window full.
    assert min(r.remaining for r in allowed) == 0
    if exact_remaining:
        assert sorted(r.remaining for r in allowed) == list(range(LIMIT))


# -- the boundary under concurrency, real Redis ------------------------------------------------


@pytest.mark.redis
def test_redis_threads_never_exceed_the_limit(redis_limiter, redis_prefix):
    for trial in range(TRIALS):
        key = f"tenant-{trial}"
        check_burst(burst(redis_limiter, SCOPE_TENANT, key), exact_remaining=False)
        after = redis_limiter.peek(SCOPE_TENANT, key, LIMIT)
        assert (after.allowed, after.remaining) == (False, 0)
    # Each trial's stored window holds exactly the allowed hits: denied ones are not recorded.
    assert stored_list_lengths(redis_prefix) == [LIMIT] * TRIALS


def stored_list_lengths(prefix: str) -> list[int]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [client.llen(k) for k in client.scan_iter(match=f"{prefix}:*")]
    finally:
        client.close()


@pytest.mark.redis
def test_redis_separate_limiters_never_exceed_the_limit(redis_prefix):
    """Each thread with its own limiter and connection pool, as separate app servers would be."""
    limiters = [RateLimiter(REDIS_URL, key_prefix=redis_prefix) for _ in range(CONCURRENT)]
    try:
        for trial in range(3):
            gate = threading.Barrier(CONCURRENT)

            def one(i: int, trial: int = trial, gate: threading.Barrier = gate) -> RateResult:
                gate.wait(timeout=30)
                return limiters[i].hit(SCOPE_API_KEY, f"key-{trial}", LIMIT)

            with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
                check_burst(list(pool.map(one, range(CONCURRENT))), exact_remaining=False)
    finally:
        for lim in limiters:
            lim.close()


PROCESSES = 10
PER_PROCESS = CONCURRENT // PROCESSES
PROCESS_TRIALS = 3


def process_worker(url: str, prefix: str, barrier, out) -> None:  # runs in a spawned process
    limiter = RateLimiter(url, key_prefix=prefix)
    limiter.peek(SCOPE_TENANT, "warm-up", LIMIT)  # connect and load the scripts before the start line
    try:
        for trial in range(PROCESS_TRIALS):
            barrier.wait(timeout=60)
            with ThreadPoolExecutor(max_workers=PER_PROCESS) as pool:
                results = list(
                    pool.map(lambda _: limiter.hit(SCOPE_TENANT, f"proc-{trial}", LIMIT), range(PER_PROCESS))
                )
            out.put(
                [(trial, r.allowed, r.limit, r.remaining, r.reset_epoch, r.retry_after_s) for r in results]
            )
    finally:
        limiter.close()


@pytest.mark.redis
def test_redis_processes_never_exceed_the_limit(redis_prefix):
    ctx = multiprocessing.get_context("spawn")  # no fork: the test process has threads
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=process_worker, args=(REDIS_URL, redis_prefix, barrier, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        rows = [row for _ in range(PROCESSES * PROCESS_TRIALS) for row in out.get(timeout=120)]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
    for trial in range(PROCESS_TRIALS):
        results = [RateResult(*row[1:]) for row in rows if row[0] == trial]
        assert len(results) == CONCURRENT
        check_burst(results, exact_remaining=False)


# -- the same semantics on both backends ------------------------------------------------------


def test_memory_threads_never_exceed_the_limit():
    limiter = RateLimiter(None)
    for trial in range(TRIALS):
        # In memory, hit and stats share one lock: every allowed hit sees its own exact remaining.
        check_burst(burst(limiter, SCOPE_TENANT, f"t{trial}"), exact_remaining=True)


def test_sequential_hits_count_down(limiter):
    start = time.time()
    results = [limiter.hit(SCOPE_TENANT, "acme", LIMIT) for _ in range(LIMIT + 3)]
    assert [r.allowed for r in results] == [True] * LIMIT + [False] * 3
    assert [r.remaining for r in results] == [*range(LIMIT - 1, -1, -1), 0, 0, 0]
    first_reset = results[0].reset_epoch
    # Redis's Lua prints timestamps with 14 significant digits: allow a millisecond of rounding.
    assert start + WINDOW_S - 0.01 <= first_reset <= time.time() + WINDOW_S
    # The oldest hit leaves the window first; every later result points at that same moment.
    assert all(abs(r.reset_epoch - first_reset) < 1e-3 for r in results)
    for r in results[LIMIT:]:
        # Rounded up from the moment of the hit, so at least what is left of the wait now.
        assert r.reset_epoch - time.time() <= r.retry_after_s <= WINDOW_S


def test_peek_does_not_count(limiter):
    fresh = limiter.peek(SCOPE_TENANT, "acme", 3)
    assert (fresh.allowed, fresh.remaining, fresh.retry_after_s) == (True, 3, 0)
    for _ in range(5):
        limiter.peek(SCOPE_TENANT, "acme", 3)
    assert [limiter.hit(SCOPE_TENANT, "acme", 3).remaining for _ in range(3)] == [2, 1, 0]
    full = limiter.peek(SCOPE_TENANT, "acme", 3)
    assert (full.allowed, full.remaining) == (False, 0)
    assert full.retry_after_s >= 1


def test_scopes_and_keys_are_independent(limiter):
    for _ in range(LIMIT):
        assert limiter.hit(SCOPE_TENANT, "t1", LIMIT).allowed
    assert not limiter.hit(SCOPE_TENANT, "t1", LIMIT).allowed
    # Same key string in another scope, another tenant, another API key: untouched.
    assert limiter.hit(SCOPE_API_KEY, "t1", LIMIT).remaining == LIMIT - 1
    assert limiter.hit(SCOPE_TENANT, "t2", LIMIT).remaining == LIMIT - 1
    assert limiter.hit(SCOPE_API_KEY, "k1", LIMIT).remaining == LIMIT - 1
    # And exhausting a key leaves its tenant alone.
    for _ in range(LIMIT):
        limiter.hit(SCOPE_API_KEY, "k2", LIMIT)
    assert not limiter.hit(SCOPE_API_KEY, "k2", LIMIT).allowed
    assert limiter.hit(SCOPE_TENANT, "t3", LIMIT).allowed


def test_keys_with_separators_do_not_collide(limiter):
    # Joined naively with '/' or ':' these would share a counter.
    keys = ["a/b", "a", "a:b", "a/b/20/1/minute", "a%2Fb", "ä", "a\nb", "*"]
    for key in keys:
        assert limiter.hit(SCOPE_TENANT, key, 1).allowed, key
    for key in keys:
        assert not limiter.hit(SCOPE_TENANT, key, 1).allowed, key


def test_hit_all_stops_at_the_first_denial(limiter):
    checks = [(SCOPE_API_KEY, "k1", 2), (SCOPE_TENANT, "t1", 3)]
    first = limiter.hit_all(checks)
    assert first.allowed and first.limit == 2 and first.remaining == 1  # the narrower limit is reported
    assert limiter.hit_all(checks).remaining == 0
    denied = limiter.hit_all(checks)
    assert not denied.allowed and denied.limit == 2
    # The key's denial didn't use a tenant slot: 2 used, 1 left.
    assert limiter.peek(SCOPE_TENANT, "t1", 3).remaining == 1
    # Another key of the same tenant takes the last tenant slot, then the tenant limit denies.
    assert limiter.hit_all([(SCOPE_API_KEY, "k2", 2), (SCOPE_TENANT, "t1", 3)]).allowed
    tenant_full = limiter.hit_all([(SCOPE_API_KEY, "k3", 2), (SCOPE_TENANT, "t1", 3)])
    assert not tenant_full.allowed and tenant_full.limit == 3
    with pytest.raises(ValueError, match="at least one"):
        limiter.hit_all([])


class FakeClock:
    """Moves time forward without sleeping a minute; patched into the modules that read it."""

    def __init__(self) -> None:
        # Whole seconds: Redis's Lua keeps 14 significant digits, so a fractional start would be
        # rounded and a retry-after computed from it could ceil to one second more.
        self.now = float(int(time.time()))

    def time(self) -> float:
        return self.now


def test_moving_window_counts_any_60_seconds(limiter, monkeypatch):
    clock = FakeClock()
    t0 = clock.now
    for module in ("limits.storage.memory", "limits.storage.redis"):
        monkeypatch.setattr(f"{module}.time", clock)
    monkeypatch.setattr(ratelimit_module, "time", clock)

    def hit_at(offset: float) -> RateResult:
        clock.now = t0 + offset
        return limiter.hit(SCOPE_TENANT, "clock", 3)

    assert [hit_at(s).remaining for s in (0, 10, 20)] == [2, 1, 0]
    late = hit_at(30)
    assert not late.allowed
    assert late.retry_after_s == 30  # when the hit at t0 leaves the window
    assert late.reset_epoch == pytest.approx(t0 + 60)
    # A fixed window would start afresh at a minute boundary; a moving one still counts 3 here.
    assert not hit_at(59.5).allowed
    again = hit_at(60.5)  # t0's hit has left; t0+10 and t0+20 are still in the window
    assert again.allowed and again.remaining == 0
    assert again.reset_epoch == pytest.approx(t0 + 70)
    blocked = hit_at(61)
    assert not blocked.allowed and blocked.retry_after_s == 9
    assert headers(blocked, now=clock.now) == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "9",
        "Retry-After": "9",
    }


# -- keys in Redis ------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_keys_are_namespaced_and_hashed(redis_limiter, redis_prefix):
    evil = "evil/../*:{x}\r\nFLUSHALL secret-token"
    redis_limiter.hit(SCOPE_API_KEY, evil, 7)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{redis_prefix}:*")]
    finally:
        client.close()
    assert len(keys) == 1
    key = keys[0]
    head = f"{redis_prefix}:flowdesk/api_key/"
    assert key.startswith(head)
    digest, rest = key[len(head) :].split("/", 1)
    assert len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)
    assert rest == "7/1/minute"
    for fragment in ("evil", "secret", "FLUSHALL", "{", "\n", ".."):
        assert fragment not in key


# -- inputs and headers -------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["", "Tenant", "a/b", "a:b", "1tenant", "x" * 33, None])
def test_bad_scopes_are_refused(scope):
    with pytest.raises(ValueError, match="scope"):
        RateLimiter(None).hit(scope, "k", 5)


@pytest.mark.parametrize("per_minute", [0, -1, 1.5, True, "5", None])
def test_bad_rates_are_refused(per_minute):
    with pytest.raises(ValueError, match="per_minute"):
        RateLimiter(None).hit(SCOPE_TENANT, "k", per_minute)


@pytest.mark.parametrize("key", ["", None, 7])
def test_bad_keys_are_refused(key):
    with pytest.raises(ValueError, match="key"):
        RateLimiter(None).hit(SCOPE_TENANT, key, 5)


def test_storage_urls():
    assert RateLimiter(None).backend == "memory"
    assert RateLimiter("memory://").backend == "memory"
    assert RateLimiter("redis://127.0.0.1:6379/0").backend == "redis"  # connects lazily
    with pytest.raises(ValueError, match="unsupported") as err:
        RateLimiter("mongodb://admin:hunter2@db.example:27017")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError, match="key_prefix"):
        RateLimiter(None, key_prefix="bad prefix/*")


def test_memory_limiters_are_per_instance():
    # Two memory limiters don't share counters: the app must use one per process.
    a, b = RateLimiter(None), RateLimiter(None)
    assert a.hit(SCOPE_TENANT, "t", 1).allowed
    assert b.hit(SCOPE_TENANT, "t", 1).allowed
    assert ratelimit_module.get_rate_limiter() is ratelimit_module.get_rate_limiter()


def test_headers_when_allowed():
    r = RateResult(allowed=True, limit=60, remaining=12, reset_epoch=1000.2, retry_after_s=0)
    assert headers(r, now=990.0) == {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "12",
        "RateLimit-Reset": "11",  # delta-seconds, rounded up: never tells a client to come back early
    }
    assert headers(r, now=1005.0)["RateLimit-Reset"] == "0"  # never negative
    assert "Retry-After" not in headers(r, now=990.0)


def test_headers_when_denied():
    r = RateResult(allowed=False, limit=60, remaining=0, reset_epoch=1042.0, retry_after_s=42)
    h = headers(r, now=1000.0)
    assert h == {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "42",
        "Retry-After": "42",
    }
    assert all(isinstance(v, str) and v.isdigit() for v in h.values())


def test_headers_from_a_real_denial(limiter):
    for _ in range(2):
        limiter.hit(SCOPE_TENANT, "h", 2)
    denied = limiter.hit(SCOPE_TENANT, "h", 2)
    h = headers(denied)
    assert h["RateLimit-Limit"] == "2"
    assert h["RateLimit-Remaining"] == "0"
    assert h["Retry-After"] == h["RateLimit-Reset"] == str(denied.retry_after_s)
    assert 1 <= int(h["Retry-After"]) <= WINDOW_S
