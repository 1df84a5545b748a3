"""A turn's live events over Redis pub/sub: the worker publishes, the web process listens.

Each message is JSON ``{"event": ..., "data": {...}}``: ``done`` and ``error`` on
``flowdesk:turn:{turn_id}``, the live ``token``, ``node`` and ``route`` events on
``flowdesk:turn:{turn_id}:live`` (the SSE event names of the chat API). The worker asks once per
turn whether anyone listens live (PUBSUB NUMSUB) and skips those ~15 publishes per turn when
nobody does: a plain POST that waits for the reply only needs ``done``. Pub/sub is
fire-and-forget: a listener that subscribes late misses tokens, so every listener also reads the
turn row once after subscribing, and ``done`` carries the whole result.
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
LIVE = frozenset({"token", "node", "route"})
TERMINAL = frozenset({"done", "error"})


def channel(turn_id: str) -> str:
    return f"flowdesk:turn:{turn_id}"


def live_channel(turn_id: str) -> str:
    return f"flowdesk:turn:{turn_id}:live"


class Publisher:
    """The worker side: publish one turn's events (errors are logged, never fail the turn)."""

    def __init__(self, turn_id: str, settings: Settings | None = None) -> None:
        self.channel = channel(turn_id)
        self.live_channel = live_channel(turn_id)
        self.redis = get_redis(settings)
        try:
            listeners = self.redis.pubsub_numsub(self.live_channel)
            #: Someone streams this turn: publish its live events too.
            self.live = bool(listeners and int(listeners[0][1]) > 0)
        except Exception as exc:
            log.warning("could not count the listeners of %s: %s", self.live_channel, exc)
            self.live = False

    def publish(self, event: str, data: dict[str, Any]) -> None:
        if event in LIVE and not self.live:
            return
        target = self.live_channel if event in LIVE else self.channel
        try:
            self.redis.publish(target, json.dumps({"event": event, "data": data}, default=str))
        except Exception as exc:  # a stream listener is optional; the turn's result is in the DB
            log.warning("could not publish %s on %s: %s", event, self.channel, exc)


class Subscription:
    """The web side: subscribe BEFORE the turn can finish, then iterate its events."""

    def __init__(self, turn_id: str, settings: Settings | None = None, *, live: bool = False) -> None:
        self.turn_id = turn_id
        self.settings = settings
        #: Also receive token/node/route (an SSE stream); a plain wait needs ``done`` only.
        self.live = live
        self._redis: Any = None
        self._pubsub: Any = None

    async def __aenter__(self) -> Subscription:
        self._redis = get_async_redis(self.settings)
        self._pubsub = self._redis.pubsub()
        channels = [channel(self.turn_id)] + ([live_channel(self.turn_id)] if self.live else [])
        await self._pubsub.subscribe(*channels)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._pubsub.unsubscribe()
            await self._pubsub.aclose()  # its connection goes back to the loop's shared pool
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
