"""The process's Redis connection: the real server from ``REDIS_URL``, or one shared fakeredis.

Everything in a process that talks Redis (the RQ queue, reply pub/sub, circuit breakers) gets its
client here, so the embedded default (``REDIS_URL`` unset) behaves like one Redis: every
``get_redis()`` call returns a client of the SAME module-level ``fakeredis.FakeServer``, and a
breaker opened by the worker thread is open for the web thread too.

Clients use ``decode_responses=False`` because RQ stores pickled/JSON bytes and reads them back
as bytes; callers that want text decode themselves.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import fakeredis
import redis

from core.settings import Settings, get_settings

#: Short timeouts: a stuck Redis must fail the caller (who degrades or answers 503), not hang it.
_SOCKET_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 2.0

_lock = threading.Lock()
_fake_server: fakeredis.FakeServer | None = None
_fake_client: fakeredis.FakeRedis | None = None
_real_clients: dict[str, redis.Redis] = {}


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """A client for ``settings.REDIS_URL``, or the process-wide fakeredis when it is unset.

    Real clients are cached per URL (one connection pool per process, thread-safe). The fake one is
    a single ``FakeRedis`` over a single ``FakeServer``: all callers see the same data.
    """
    settings = settings or get_settings()
    url = settings.REDIS_URL
    with _lock:
        if url:
            client = _real_clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url,
                    decode_responses=False,
                    socket_timeout=_SOCKET_TIMEOUT_S,
                    socket_connect_timeout=_CONNECT_TIMEOUT_S,
                    health_check_interval=30,
                )
                _real_clients[url] = client
            return client
        global _fake_server, _fake_client
        if _fake_client is None:
            _fake_server = fakeredis.FakeServer()
            _fake_client = fakeredis.FakeRedis(server=_fake_server, decode_responses=False)
        return _fake_client


def is_fake(client: redis.Redis) -> bool:
    """True for the embedded fakeredis (no other process can see its data)."""
    return isinstance(client, fakeredis.FakeRedis)


def reset_fake_redis() -> None:
    """Forget the embedded server and its data (tests); the next ``get_redis()`` starts empty."""
    global _fake_server, _fake_client
    with _lock:
        if _fake_client is not None:
            _fake_client.close()
        _fake_server = None
        _fake_client = None


_async_clients: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def get_async_redis(settings: Settings | None = None) -> redis.asyncio.Redis:
    """An asyncio client on the same Redis as :func:`get_redis` (the web process's waits and SSE).

    One client (one connection pool) per event loop and URL, because asyncio connections belong
    to the loop that made them; callers must not close it. For the embedded default it talks to
    the same ``FakeServer`` as the sync client, so pub/sub crosses between them.
    """
    import redis.asyncio

    settings = settings or get_settings()
    loop = asyncio.get_running_loop()
    per_loop = _async_clients.setdefault(loop, {})
    if settings.REDIS_URL:
        client = per_loop.get(settings.REDIS_URL)
        if client is None:
            client = redis.asyncio.Redis.from_url(
                settings.REDIS_URL,
                decode_responses=False,
                socket_connect_timeout=_CONNECT_TIMEOUT_S,
            )
            per_loop[settings.REDIS_URL] = client
        return client
    get_redis(settings)  # creates the process's FakeServer if nothing did yet
    key = f"fake:{id(_fake_server)}"  # a reset_fake_redis() starts a new server
    client = per_loop.get(key)
    if client is None:
        client = per_loop[key] = fakeredis.FakeAsyncRedis(server=_fake_server, decode_responses=False)
    return client
