"""Circuit breakers shared through Redis: two breaker objects with one key act as two workers.

Run against the real Redis (127.0.0.1:6379) and the embedded fakeredis. Each test uses its own
namespace and deletes its keys. No test sleeps for the reset timeout: it moves ``opened_at`` back.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import fakeredis
import pybreaker
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.settings import ROOT, Settings
from runtime.breakers import SharedRedisStorage, breaker_for, make_breaker, namespace, reset_breakers, url_key
from tests.conftest import REDIS_URL


class Down(ConnectionError):
    """The dependency failed."""


class CallerBug(ValueError):
    """Not the dependency's fault."""


def fail() -> None:
    raise Down("connection refused")


def ok() -> str:
    return "ok"


@pytest.fixture(params=["real", "fake"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "real":
        request.applymarker(pytest.mark.redis)
        from tests.conftest import address, reachable, unavailable

        if not reachable(*address(REDIS_URL, 6379)):
            unavailable("Redis is not reachable (set TEST_REDIS_URL)")
        c: redis.Redis = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    else:
        c = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield c
    c.close()


@pytest.fixture
def ns(client: redis.Redis) -> Iterator[str]:
    name = namespace("test", uuid.uuid4().hex)
    yield name
    keys = list(client.scan_iter(match=name + ":*"))
    if keys:
        client.delete(*keys)


def pair(client: redis.Redis, ns: str, fails: int = 3, reset_s: float = 30.0) -> tuple:
    """Two breakers over one key, as two worker processes would each build one."""
    a = make_breaker(ns, client, fail_max=fails, reset_timeout=reset_s, exclude=[CallerBug])
    b = make_breaker(ns, client, fail_max=fails, reset_timeout=reset_s, exclude=[CallerBug])
    return a, b


def rewind_opened_at(client: redis.Redis, ns: str, seconds: float) -> None:
    key = f"{ns}:pybreaker:opened_at"
    client.set(key, f"{float(client.get(key)) - seconds:.6f}")


def test_failures_through_one_open_the_circuit_for_the_other(client, ns) -> None:
    a, b = pair(client, ns, fails=3)
    for _ in range(2):
        with pytest.raises(Down):
            a.call(fail)
    assert b.fail_counter == 2 and b.current_state == "closed"
    with pytest.raises(Down):  # the failure that trips it is re-raised as itself
        b.call(fail)
    assert a.current_state == b.current_state == "open"
    calls: list[int] = []
    with pytest.raises(pybreaker.CircuitBreakerError):
        a.call(lambda: calls.append(1))
    assert calls == []  # failing fast: the dependency is not called
    assert client.get(f"{ns}:pybreaker:state") == b"open"


def test_a_success_anywhere_resets_the_consecutive_count(client, ns) -> None:
    a, b = pair(client, ns, fails=3)
    for _ in range(2):
        with pytest.raises(Down):
            a.call(fail)
    assert b.call(ok) == "ok"
    assert a.fail_counter == 0
    with pytest.raises(Down):
        a.call(fail)
    assert b.current_state == "closed"


def test_caller_errors_do_not_count(client, ns) -> None:
    a, b = pair(client, ns, fails=1)
    with pytest.raises(CallerBug):
        a.call(lambda: (_ for _ in ()).throw(CallerBug("bad request")))
    assert b.current_state == "closed" and b.fail_counter == 0


def test_after_the_reset_timeout_one_trial_closes_it_for_everyone(client, ns) -> None:
    a, b = pair(client, ns, fails=1, reset_s=30)
    with pytest.raises(Down):
        a.call(fail)
    with pytest.raises(pybreaker.CircuitBreakerError):
        b.call(ok)
    rewind_opened_at(client, ns, 31)
    seen: list[str] = []
    assert b.call(lambda: seen.append(b.current_state) or "ok") == "ok"
    assert seen == ["half-open"]  # the trial ran with the circuit half-open ...
    assert a.current_state == b.current_state == "closed"  # ... and its success closed it
    assert a.call(ok) == "ok"


def test_a_failed_trial_reopens_it_for_another_timeout(client, ns) -> None:
    a, b = pair(client, ns, fails=1, reset_s=30)
    with pytest.raises(Down):
        a.call(fail)
    rewind_opened_at(client, ns, 31)
    with pytest.raises(Down):
        b.call(fail)
    assert a.current_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):  # a fresh timeout started
        a.call(ok)
    opened = float(client.get(f"{ns}:pybreaker:opened_at"))
    assert time.time() - opened < 30


def test_calling_context_manager_counts_like_call(client, ns) -> None:
    a, b = pair(client, ns, fails=2)
    for _ in range(2):
        with pytest.raises(Down), a.calling():
            fail()
    with pytest.raises(pybreaker.CircuitBreakerError), b.calling():
        pytest.fail("the body must not run while the circuit is open")


@pytest.mark.redis
@pytest.mark.slow
def test_another_process_opens_the_circuit_this_one_sees() -> None:
    """A real second process (what a second worker is) trips the circuit; this one fails fast."""
    ns = namespace("test", uuid.uuid4().hex)
    script = textwrap.dedent(
        f"""
        import redis
        from runtime.breakers import make_breaker
        b = make_breaker({ns!r}, redis.Redis.from_url({REDIS_URL!r}), fail_max=2, reset_timeout=30)
        for _ in range(2):
            try:
                with b.calling():
                    raise ConnectionError("down")
            except ConnectionError:
                pass
        print(b.current_state)
        """
    )
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        )
        assert out.stdout.strip() == "open"
        here = make_breaker(ns, client, fail_max=2, reset_timeout=30)
        with pytest.raises(pybreaker.CircuitBreakerError):
            here.call(ok)
    finally:
        keys = list(client.scan_iter(match=ns + ":*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_redis_outage_falls_back_to_process_memory(caplog) -> None:
    # Nothing listens on port 1: every Redis operation fails at once (no client-side retries).
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    b = make_breaker(namespace("test", uuid.uuid4().hex), dead, fail_max=2, reset_timeout=30)
    assert isinstance(b._state_storage, SharedRedisStorage)
    for _ in range(2):
        with pytest.raises(Down):
            b.call(fail)
    assert b.current_state == "open"  # still cut short, in this process
    with pytest.raises(pybreaker.CircuitBreakerError):
        b.call(ok)
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per call


def test_shared_again_when_redis_comes_back(caplog) -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    ns = namespace("test", uuid.uuid4().hex)
    b = make_breaker(ns, client, fail_max=2, reset_timeout=30)
    storage = b._state_storage
    server.connected = False  # Redis goes away
    for _ in range(2):
        with pytest.raises(Down):
            b.call(fail)
    assert b.current_state == "open"
    server.connected = True  # ... and comes back; skip the retry window instead of sleeping
    storage._down_until = 0.0
    caplog.set_level(logging.INFO, logger="runtime.breakers")
    assert b.current_state == "closed"  # Redis never saw those failures: its state rules again
    assert client.get(f"{ns}:pybreaker:state") == b"closed"
    assert any("Redis is back" in r.getMessage() for r in caplog.records)


# --- breaker_for: the process's breakers, thresholds from settings ------------------------------


def settings(**kw) -> Settings:
    base = {"REDIS_URL": None, "LLM_BREAKER_FAILS": 4, "LLM_BREAKER_RESET_S": 7.0}
    return Settings(_env_file=None, **{"HTTP_BREAKER_FAILS": 2, "HTTP_BREAKER_RESET_S": 3.0, **base, **kw})


def test_breaker_for_caches_per_kind_and_key_with_its_kinds_thresholds() -> None:
    key = uuid.uuid4().hex
    s = settings()
    llm, http = breaker_for("llm", key, s), breaker_for("http", key, s)
    assert breaker_for("llm", key, s) is llm and http is not llm
    assert (llm.fail_max, llm.reset_timeout) == (4, 7.0)
    assert (http.fail_max, http.reset_timeout) == (2, 3.0)
    assert llm.name == f"flowdesk:breaker:llm:{key}"


def test_breaker_for_stores_state_in_the_shared_redis() -> None:
    from core.redis import get_redis

    key = uuid.uuid4().hex
    s = settings()
    b = breaker_for("http", key, s)
    for _ in range(2):
        with pytest.raises(Down):
            b.call(fail)
    assert get_redis(s).get(f"flowdesk:breaker:http:{key}:pybreaker:state") == b"open"


def test_reset_breakers_closes_the_shared_circuit() -> None:
    from core.redis import get_redis

    key = uuid.uuid4().hex
    s = settings()
    b = breaker_for("http", key, s)
    for _ in range(2):
        with pytest.raises(Down):
            b.call(fail)
    other = make_breaker(b.name, get_redis(s), fail_max=2, reset_timeout=3)  # another worker's
    reset_breakers()
    assert other.current_state == "closed"
    assert breaker_for("http", key, s) is not b
    assert breaker_for("http", key, s).call(ok) == "ok"


def test_breaker_for_follows_a_reset_embedded_redis() -> None:
    from core.redis import get_redis, reset_fake_redis

    key = uuid.uuid4().hex
    s = settings()
    before = breaker_for("http", key, s)
    reset_fake_redis()  # what the queue tests do between tests
    after = breaker_for("http", key, s)
    assert after is not before and after._state_storage._redis is get_redis(s)
    assert breaker_for("http", key, s) is after


@pytest.mark.parametrize(
    "kind, key",
    [("LLM", "x"), ("llm:x", "x"), ("", "x"), ("llm", ""), ("llm", "a b")],
)
def test_bad_kinds_and_keys_are_refused(kind: str, key: str) -> None:
    with pytest.raises(ValueError, match="breaker"):
        namespace(kind, key)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown breaker kind 'smtp'"):
        breaker_for("smtp", "mail", settings())


def test_url_key_drops_credentials_query_and_fragment() -> None:
    assert (
        url_key("https://user:pw@API.example.com:8443/v1/?key=secret#x") == "https://api.example.com:8443/v1"
    )
    assert url_key("http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1"
