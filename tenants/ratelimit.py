"""Per-tenant and per-API-key request rate limits (the ``limits`` library), in Redis or in memory.

Strategy: **moving window** (``limits.strategies.MovingWindowRateLimiter``), 60 s.
- It is exact: never more than ``per_minute`` hits in ANY 60-second interval. A fixed window lets
  a client spend the limit at 0:59 and again at 1:00 (2x in two seconds), which is the burst a
  per-minute limit exists to stop (it feeds LLM spend and the worker queue).
- On Redis, check-and-record is one Lua script (``acquire_moving_window.lua``: LINDEX, LPUSH,
  LTRIM, EXPIRE), and Redis runs scripts one at a time, so concurrent hits from any number of
  threads, processes or machines can't let the limit be exceeded. Denied hits are not recorded,
  so hammering while limited doesn't push the retry time back.
- Cost: one list of at most ``per_minute`` timestamps per (scope, key), trimmed on every hit and
  expiring 60 s after the last one; fine at plan rates (<= a few thousand per minute).
- ``remaining`` and ``reset`` are read right after the hit (a second script). On Redis that read
  is a snapshot, not atomic with the hit: under concurrency two requests may both see the same
  ``remaining``, never a larger value than is true. The allow/deny decision itself is atomic.

Embedded default (no ``REDIS_URL``): ``limits``' own ``MemoryStorage``, one per process, which
is what the embedded app is. Not fakeredis: fakeredis runs Lua only with ``lupa`` (not installed)
and the embedded app has no second process to share counters with. ``MemoryStorage``'s per-key
locks can be swapped out by its expiry timer thread, so this module serialises memory hits with
one lock of its own (hit and stats together, hence exact ``remaining`` there).

Keys: ``<key_prefix>:flowdesk/<scope>/<sha256(key)[:32]>/<per_minute>/1/minute``. The caller's key
(a tenant id, an API key id) is hashed, so no user-controlled separator or secret reaches Redis.
The per-minute amount is part of the key: a plan change starts a fresh window.

Callers share ONE limiter per process (:func:`get_rate_limiter`): two memory limiters keep two
sets of counters. Redis errors raise ``limits.errors.StorageError`` (the API answers 503).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from core.settings import get_settings

WINDOW_S: Final = 60
SCOPE_TENANT: Final = "tenant"
SCOPE_API_KEY: Final = "api_key"
DEFAULT_KEY_PREFIX: Final = "flowdesk:rl"
_NAMESPACE: Final = "flowdesk"
_SCOPE_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_PREFIX_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "redis+unix://")
_MEMORY_SCHEME: Final = "memory://"


@dataclass(frozen=True, slots=True)
class RateResult:
    allowed: bool
    limit: int
    #: Hits left in the window after this one (0 when denied).
    remaining: int
    #: Unix time when the oldest hit in the window leaves it, i.e. when ``remaining`` next grows.
    reset_epoch: float
    #: Whole seconds to wait before retrying: >= 1 when denied, 0 when allowed.
    retry_after_s: int


def headers(result: RateResult, *, now: float | None = None) -> dict[str, str]:
    """``RateLimit-Limit/Remaining/Reset`` (IETF draft: Reset is delta-seconds, not a timestamp),
    plus ``Retry-After`` (seconds) when denied. ``now`` is for deterministic tests."""
    if result.allowed:
        now = time.time() if now is None else now
        reset_in = max(0, math.ceil(result.reset_epoch - now))
    else:
        # Denied: the window resets exactly when a retry can succeed; one number for both headers.
        reset_in = max(1, result.retry_after_s)
    out = {
        "RateLimit-Limit": str(result.limit),
        "RateLimit-Remaining": str(result.remaining),
        "RateLimit-Reset": str(reset_in),
    }
    if not result.allowed:
        out["Retry-After"] = str(reset_in)
    return out


def _redis_storage(url: str, key_prefix: str) -> Storage:
    # Short timeouts: a stuck Redis must fail the request (503) rather than hang it.
    return RedisStorage(
        url,
        key_prefix=key_prefix,
        wrap_exceptions=True,
        socket_connect_timeout=2,
        socket_timeout=2,
    )


class RateLimiter:
    """Moving-window limits per ``(scope, key)``; Redis when ``storage_url`` is a redis URL,
    in-process memory when it is None or ``memory://``."""

    def __init__(self, storage_url: str | None, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        if not _PREFIX_RE.fullmatch(key_prefix):
            raise ValueError(f"key_prefix must match {_PREFIX_RE.pattern}, not {key_prefix!r}")
        self._lock: contextlib.AbstractContextManager[object]
        if storage_url is None or storage_url == _MEMORY_SCHEME:
            self.backend = "memory"
            self._storage: Storage = MemoryStorage()
            self._lock = threading.Lock()
        elif storage_url.startswith(_REDIS_SCHEMES):
            self.backend = "redis"
            self._storage = _redis_storage(storage_url, key_prefix)
            self._lock = contextlib.nullcontext()  # atomicity comes from Redis running the script
        else:
            scheme = storage_url.split(":", 1)[0]  # never echo the URL: it may hold a password
            raise ValueError(f"unsupported rate-limit storage scheme {scheme!r}; use redis:// or memory://")
        self._strategy = MovingWindowRateLimiter(self._storage)

    @staticmethod
    def _identifiers(scope: str, key: str, per_minute: int) -> tuple[RateLimitItemPerMinute, tuple[str, str]]:
        if not isinstance(scope, str) or not _SCOPE_RE.fullmatch(scope):
            raise ValueError(f"scope must match {_SCOPE_RE.pattern}, not {scope!r}")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
            raise ValueError(f"per_minute must be a positive int, not {per_minute!r}")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return RateLimitItemPerMinute(per_minute, namespace=_NAMESPACE), (scope, digest)

    def _result(self, item: RateLimitItemPerMinute, allowed: bool, ids: tuple[str, str]) -> RateResult:
        stats = self._strategy.get_window_stats(item, *ids)
        now = time.time()
        # An empty window (only possible for peek) resets a full window from now.
        reset_epoch = stats.reset_time if stats.remaining < item.amount else now + WINDOW_S
        if allowed:
            return RateResult(True, item.amount, max(0, stats.remaining), reset_epoch, 0)
        retry = max(1, math.ceil(reset_epoch - now))
        return RateResult(False, item.amount, 0, reset_epoch, retry)

    def hit(self, scope: str, key: str, per_minute: int) -> RateResult:
        """Count one request for ``key`` in ``scope`` against ``per_minute``; allowed or not."""
        item, ids = self._identifiers(scope, key, per_minute)
        with self._lock:
            allowed = self._strategy.hit(item, *ids)
            return self._result(item, allowed, ids)

    def peek(self, scope: str, key: str, per_minute: int) -> RateResult:
        """The state without counting a request (``allowed``: would the next hit pass)."""
        item, ids = self._identifiers(scope, key, per_minute)
        with self._lock:
            stats = self._strategy.get_window_stats(item, *ids)
            return self._result(item, stats.remaining > 0, ids)

    def hit_all(self, checks: Iterable[tuple[str, str, int]]) -> RateResult:
        """Several limits for one request, narrowest first (e.g. per key, then per tenant).

        Stops at the first denial, so a request refused by its key's limit isn't counted against
        the tenant; a request refused by a later limit has still used a slot of the earlier ones.
        Returns the denial, or the allowed result with the least ``remaining`` (for the headers).
        """
        results: list[RateResult] = []
        for scope, key, per_minute in checks:
            result = self.hit(scope, key, per_minute)
            if not result.allowed:
                return result
            results.append(result)
        if not results:
            raise ValueError("hit_all needs at least one check")
        return min(results, key=lambda r: (r.remaining, -r.reset_epoch))

    def close(self) -> None:
        """Release the Redis connection pool (no-op for memory)."""
        if isinstance(self._storage, RedisStorage):
            self._storage.get_connection().close()


@lru_cache
def get_rate_limiter() -> RateLimiter:
    """The process's limiter, from ``REDIS_URL`` (memory when unset)."""
    return RateLimiter(get_settings().REDIS_URL)
