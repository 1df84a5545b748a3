"""The turn queue under test: the embedded default (fakeredis + worker thread) or the real Redis.

``queue_backend`` is parametrized like ``db_engine``: ``embedded`` runs exactly what ``make run``
runs (no REDIS_URL: the worker thread starts on the first enqueue); ``redis`` points REDIS_URL at
a private database of the real server and runs a ``TurnWorker`` (the class ``flowdesk worker``
runs) in a thread of the test process. Both get a fresh runner, so engine caches never leak.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from core.redis import reset_fake_redis
from core.settings import get_settings
from runtime import jobs, worker
from tests.conftest import REDIS_URL

#: A two-turn flow: asks a name (a checkpointed interrupt), then greets; the chat tests' workhorse.
GREETER = """\
version: 1
id: greeter
name: Greeter
nodes:
  - id: start
    type: start
  - id: ask_name
    type: extract
    config:
      fields:
        name:
          description: The user's first name
          pattern: (?i)(?:i am|name is)\\s+(\\w+)
          ask: What is your name?
      use_llm: false
      ask_first: true
  - id: hi
    type: reply
    config:
      text: Nice to meet you, {{ name }}!
  - id: nameless
    type: reply
    config:
      text: No name, no problem.
edges:
  - {from: start, to: ask_name}
  - {from: ask_name, to: hi}
  - {from: ask_name, to: nameless, when: missing}
"""

#: A database of its own on the real server: flushed before and after each test.
QUEUE_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"


@dataclass
class QueueBackend:
    kind: str
    url: str | None
    threads: list[tuple[worker.TurnWorker, threading.Thread]] = field(default_factory=list)

    def start_worker(self) -> worker.TurnWorker:
        """One more worker (embedded: the process's worker thread)."""
        if self.kind == "embedded":
            return worker.ensure_embedded_worker()
        w = worker.make_worker()
        t = threading.Thread(
            target=w.work,
            kwargs={"burst": False, "with_scheduler": False, "logging_level": "WARNING"},
            daemon=True,
        )
        t.start()
        self.threads.append((w, t))
        return w

    def stop_workers(self) -> None:
        worker.stop_embedded_worker()
        for w, t in self.threads:
            w._stop_requested = True
        for _w, t in self.threads:
            t.join(15)
        self.threads.clear()


def _reset() -> None:
    worker.stop_embedded_worker()
    jobs.reset_runner()
    reset_fake_redis()
    get_settings.cache_clear()


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def queue_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[QueueBackend]:
    _reset()
    if request.param == "redis":
        client = redis.Redis.from_url(QUEUE_REDIS_URL)
        client.flushdb()
        monkeypatch.setenv("REDIS_URL", QUEUE_REDIS_URL)
        backend = QueueBackend("redis", QUEUE_REDIS_URL)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
        backend = QueueBackend("embedded", None)
    get_settings.cache_clear()
    if backend.kind == "redis":
        backend.start_worker()
    try:
        yield backend
    finally:
        backend.stop_workers()
        if backend.url:
            redis.Redis.from_url(backend.url).flushdb()
        _reset()


def eventually(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (a bound on waiting, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(every)
