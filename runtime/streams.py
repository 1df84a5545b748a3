"""A turn's live events over Redis pub/sub: the worker publishes, the web process listens.

Channel ``flowdesk:turn:{turn_id}``; each message is JSON ``{"event": ..., "data": {...}}`` with
``event`` one of ``token``, ``node``, ``route``, ``done``, ``error`` (the SSE event names of the
chat API). Pub/sub is fire-and-forget: a listener that subscribes late misses tokens, so every
listener also reads the turn row once after subscribing, and ``done`` carries the whole result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from core.redis import get_async_redis, get_redis
from core.settings import Settings

log = logging.getLogger(__name__)

EVENTS = ("token", "node", "route", "done", "error")
TERMINAL = frozenset({"done", "error"})


def channel(turn_id: str) -> str:
    return f"flowdesk:turn:{turn_id}"


class Publisher:
    """The worker side: publish one turn's events (errors are logged, never fail the turn)."""

    def __init__(self, turn_id: str, settings: Settings | None = None) -> None:
        self.channel = channel(turn_id)
        self.redis = get_redis(settings)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        try:
            self.redis.publish(self.channel, json.dumps({"event": event, "data": data}, default=str))
        except Exception as exc:  # a stream listener is optional; the turn's result is in the DB
            log.warning("could not publish %s on %s: %s", event, self.channel, exc)


class Subscription:
    """The web side: subscribe BEFORE the turn can finish, then iterate its events."""

    def __init__(self, turn_id: str, settings: Settings | None = None) -> None:
        self.turn_id = turn_id
        self.settings = settings
        self._redis: Any = None
        self._pubsub: Any = None

    async def __aenter__(self) -> Subscription:
        self._redis = get_async_redis(self.settings)
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(channel(self.turn_id))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._pubsub.unsubscribe()
            await self._pubsub.aclose()
            await self._redis.aclose()
        except Exception as exc:  # closing a broken connection must not hide the real outcome
            log.debug("closing the subscription of %s: %s", self.turn_id, exc)

    async def next(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        """The next event, or None when ``timeout`` seconds pass without one."""
        msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=max(timeout, 0.001))
        if msg is None or msg.get("type") != "message":
            return None
        try:
            body = json.loads(msg["data"])
            return str(body["event"]), dict(body.get("data") or {})
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", channel(self.turn_id))
            return None

    async def events(self, deadline: float) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events until a terminal one or the monotonic ``deadline`` (then stops quietly)."""
        import time

        while (left := deadline - time.monotonic()) > 0:
            item = await self.next(min(left, 1.0))
            if item is None:
                continue
            yield item
            if item[0] in TERMINAL:
                return
