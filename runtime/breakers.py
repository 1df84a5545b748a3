"""Circuit breakers per external dependency (each LLM base URL, each tool host), shared through Redis.

``breaker_for(kind, key, settings)`` returns the process's ``pybreaker.CircuitBreaker`` for one
dependency. Its state (closed/open/half-open, consecutive failures, when it opened) lives in Redis
under ``flowdesk:breaker:{kind}:{key}:pybreaker:*`` (pybreaker's ``CircuitRedisStorage`` layout),
so every worker process and machine sharing ``REDIS_URL`` sees the same circuit: failures counted
by one worker open it for all, and they all fail fast until the reset timeout. Embedded default
(no ``REDIS_URL``): the process-wide fakeredis of :mod:`core.redis`, shared by every thread.

Semantics (pybreaker's): ``fail_max`` consecutive failures open the circuit (any success anywhere
resets the count); after ``reset_timeout`` the next call is a trial (half-open): success closes
it, failure re-opens it for another timeout. Several processes may each let one trial through at
the same moment; that is a handful of extra calls, not a stampede. pybreaker stores the opening
time in whole seconds, so a circuit may half-open up to 1 s early.

When Redis itself fails, each breaker falls back to its own in-memory state (one warning per
outage; Redis is retried every ``REDIS_RETRY_S``), so an LLM or host outage is still cut short in
this process; the circuit is shared again as soon as Redis answers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pybreaker
import redis

from core.redis import get_redis
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

PREFIX: Final = "flowdesk:breaker"
KINDS: Final = ("llm", "http")
_KIND_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: After a Redis error, a breaker uses its in-memory state for this long before trying Redis again.
REDIS_RETRY_S: Final = 5.0

T = TypeVar("T")

Exclusion = type[BaseException] | Callable[[Any], bool]


def namespace(kind: str, key: str) -> str:
    """``flowdesk:breaker:{kind}:{key}``; pybreaker appends ``:pybreaker:<field>``."""
    if not _KIND_RE.fullmatch(kind):
        raise ValueError(f"breaker kind must match {_KIND_RE.pattern}, not {kind!r}")
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"breaker key must be non-empty without whitespace, not {key!r}")
    return f"{PREFIX}:{kind}:{key}"


def url_key(url: str) -> str:
    """A base URL as a breaker key: no credentials, query or fragment (they may hold secrets)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", "")) or url


class SharedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage, degrading to process memory while Redis is unreachable.

    The stock class logs a traceback and assumes "closed, no failures" on every Redis error, which
    turns the breaker off exactly when the infrastructure is having a bad day; here each operation
    goes to an in-memory twin instead (kept in step with every write). After a Redis error, Redis is
    not tried again for :data:`REDIS_RETRY_S`, so an outage costs one slow operation per window,
    not one per breaker operation. Keys and encodings are the stock ones (bytes from Redis, so the
    client must not decode responses), except ``opened_at``: see its setter.
    """

    def __init__(self, redis_client: redis.Redis, namespace_name: str) -> None:
        self._memory = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._down_until = 0.0
        self._healthy = True
        super().__init__(pybreaker.STATE_CLOSED, redis_client, namespace=namespace_name)

    @property
    def key(self) -> str:
        return self._namespace_name or ""

    def _redis_call(self, op: Callable[[], T], fallback: Callable[[], T]) -> T:
        if time.monotonic() < self._down_until:
            return fallback()
        try:
            result = op()
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + REDIS_RETRY_S
            if self._healthy:  # once per outage, not once per call
                self._healthy = False
                log.warning("breaker %s: Redis unavailable (%s); using process-local state", self.key, exc)
            return fallback()
        if not self._healthy:
            self._healthy = True
            log.info("breaker %s: Redis is back; the circuit is shared again", self.key)
        return result

    def _write(self, op: Callable[[], Any]) -> None:
        self._redis_call(op, lambda: None)

    def _initialize_redis_state(self, state: str) -> None:
        self._write(lambda: super(SharedRedisStorage, self)._initialize_redis_state(state))

    def _read_state(self) -> str:
        raw = self._redis.get(self._namespace("state"))
        if raw is None:
            # Keys gone (flushed, or reset by an operator): start closed again.
            super()._initialize_redis_state(pybreaker.STATE_CLOSED)
            return pybreaker.STATE_CLOSED
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    @property
    def state(self) -> str:
        return self._redis_call(self._read_state, lambda: self._memory.state)

    @state.setter
    def state(self, state: str) -> None:
        self._memory.state = state
        self._write(lambda: self._redis.set(self._namespace("state"), str(state)))

    def _read_int(self, field: str) -> int:
        value = self._redis.get(self._namespace(field))
        return int(value) if value else 0

    def increment_counter(self) -> None:
        self._memory.increment_counter()
        self._write(lambda: self._redis.incr(self._namespace("fail_counter")))

    def reset_counter(self) -> None:
        self._memory.reset_counter()
        self._write(lambda: self._redis.set(self._namespace("fail_counter"), 0))

    def increment_success_counter(self) -> None:
        self._memory.increment_success_counter()
        self._write(lambda: self._redis.incr(self._namespace("success_counter")))

    def reset_success_counter(self) -> None:
        self._memory.reset_success_counter()
        self._write(lambda: self._redis.set(self._namespace("success_counter"), 0))

    @property
    def counter(self) -> int:
        return self._redis_call(lambda: self._read_int("fail_counter"), lambda: self._memory.counter)

    @property
    def success_counter(self) -> int:
        return self._redis_call(
            lambda: self._read_int("success_counter"), lambda: self._memory.success_counter
        )

    def _read_opened_at(self) -> datetime | None:
        raw = self._redis.get(self._namespace("opened_at"))
        return datetime.fromtimestamp(float(raw), UTC) if raw else None

    @property
    def opened_at(self) -> datetime | None:
        return self._redis_call(self._read_opened_at, lambda: self._memory.opened_at)

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        self._memory.opened_at = now
        # Sub-second precision (the stock storage truncates to whole seconds, which half-opens a
        # short-timeout circuit up to 1 s early), and a plain SET rather than the stock "set if
        # greater" WATCH transaction: every open starts a fresh timeout.
        self._write(lambda: self._redis.set(self._namespace("opened_at"), f"{now.timestamp():.6f}"))

    def keys(self) -> list[str]:
        return [self._namespace(f) for f in ("state", "fail_counter", "success_counter", "opened_at")]


_BREAKERS: dict[tuple[str, str], pybreaker.CircuitBreaker] = {}
_LOCK = threading.Lock()


def _thresholds(kind: str, s: Settings) -> tuple[int, float]:
    if kind == "llm":
        return s.LLM_BREAKER_FAILS, s.LLM_BREAKER_RESET_S
    if kind == "http":
        return s.HTTP_BREAKER_FAILS, s.HTTP_BREAKER_RESET_S
    raise ValueError(f"unknown breaker kind {kind!r}; known: {', '.join(KINDS)}")


def breaker_for(
    kind: str,
    key: str,
    settings: Settings | None = None,
    *,
    exclude: Iterable[Exclusion] = (),
    redis_client: redis.Redis | None = None,
) -> pybreaker.CircuitBreaker:
    """The process's breaker for dependency ``key`` of ``kind`` ("llm" or "http").

    Created on first use with that caller's settings (``{KIND}_BREAKER_FAILS`` and
    ``{KIND}_BREAKER_RESET_S``) and ``exclude`` (exceptions, or predicates, that are the caller's
    fault and say nothing about the dependency's health); later calls return the same object.
    The state is in Redis (``get_redis(settings)`` unless ``redis_client`` is given).
    """
    ns = namespace(kind, key)
    s = settings or get_settings()
    client = redis_client if redis_client is not None else get_redis(s)
    with _LOCK:
        breaker = _BREAKERS.get((kind, key))
        # Rebuilt when the process's Redis changed (reset_fake_redis() in tests): the state is in
        # Redis, so a breaker bound to a forgotten server would keep a circuit nobody else sees.
        if breaker is None or getattr(breaker._state_storage, "_redis", None) is not client:
            fails, reset_s = _thresholds(kind, s)
            breaker = make_breaker(ns, client, fail_max=fails, reset_timeout=reset_s, exclude=exclude)
            _BREAKERS[(kind, key)] = breaker
        return breaker


def make_breaker(
    ns: str,
    redis_client: redis.Redis | None,
    *,
    fail_max: int,
    reset_timeout: float,
    exclude: Iterable[Exclusion] = (),
) -> pybreaker.CircuitBreaker:
    """A new (uncached) breaker over the Redis namespace ``ns``; memory-only when no client."""
    storage = SharedRedisStorage(redis_client, ns) if redis_client is not None else None
    return pybreaker.CircuitBreaker(
        fail_max=max(1, fail_max),
        reset_timeout=reset_timeout,
        exclude=list(exclude),
        state_storage=storage,
        name=ns,
        # Re-raise the failure that tripped the circuit (its message says what broke); only calls
        # refused while it is open raise CircuitBreakerError.
        throw_new_error_on_trip=False,
    )


def reset_breakers(kind: str | None = None) -> None:
    """Close and forget this process's breakers (all, or one kind): their shared state in Redis is
    deleted too, so other processes see the circuits closed (tests; an operator's "retry now")."""
    with _LOCK:
        for (k, key), breaker in list(_BREAKERS.items()):
            if kind is not None and k != kind:
                continue
            storage = breaker._state_storage
            if isinstance(storage, SharedRedisStorage):
                try:
                    storage._redis.delete(*storage.keys())
                except redis.RedisError as exc:
                    log.warning("breaker %s: could not delete its Redis state: %s", storage.key, exc)
            del _BREAKERS[(k, key)]


def state_of(kind: str, key: str) -> str | None:
    """The current state of a breaker this process created ("closed", "open", "half-open"), or None."""
    with _LOCK:
        breaker = _BREAKERS.get((kind, key))
    return breaker.current_state if breaker is not None else None
