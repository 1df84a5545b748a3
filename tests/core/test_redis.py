"""core.redis: the embedded default shares ONE fakeredis server per process; REDIS_URL gives the real one."""

from __future__ import annotations

import threading
import uuid

import fakeredis
import pytest
import redis

from core.redis import get_redis, is_fake, reset_fake_redis
from core.settings import Settings
from tests.conftest import REDIS_URL


def embedded() -> Settings:
    return Settings(_env_file=None, REDIS_URL=None)


@pytest.fixture
def fresh_fake():
    reset_fake_redis()
    yield
    reset_fake_redis()


def test_embedded_default_is_one_process_wide_fakeredis(fresh_fake) -> None:
    client = get_redis(embedded())
    assert isinstance(client, fakeredis.FakeRedis) and is_fake(client)
    assert get_redis(embedded()) is client
    client.set(b"k", b"v")
    # Another component, another thread: the same data.
    seen: list[bytes | None] = []
    t = threading.Thread(target=lambda: seen.append(get_redis(embedded()).get(b"k")))
    t.start()
    t.join()
    assert seen == [b"v"]


def test_embedded_client_returns_bytes_for_rq(fresh_fake) -> None:
    client = get_redis(embedded())
    client.hset("h", mapping={"a": "1"})
    assert client.hgetall("h") == {b"a": b"1"}


def test_reset_fake_redis_starts_an_empty_server(fresh_fake) -> None:
    before = get_redis(embedded())
    before.set(b"k", b"v")
    reset_fake_redis()
    after = get_redis(embedded())
    assert after is not before
    assert after.get(b"k") is None


@pytest.mark.redis
def test_redis_url_gives_a_cached_real_client() -> None:
    settings = Settings(_env_file=None, REDIS_URL=REDIS_URL)
    client = get_redis(settings)
    assert not is_fake(client) and isinstance(client, redis.Redis)
    assert get_redis(Settings(_env_file=None, REDIS_URL=REDIS_URL)) is client  # one pool per URL
    key = f"flowdesk:test:redis:{uuid.uuid4().hex}"
    try:
        client.set(key, "v", ex=60)
        assert client.get(key) == b"v"
        # A separate connection (another process would have one) sees the same value.
        other = redis.Redis.from_url(REDIS_URL)
        assert other.get(key) == b"v"
        other.close()
    finally:
        client.delete(key)


@pytest.mark.redis
def test_real_and_embedded_do_not_mix(fresh_fake) -> None:
    real = get_redis(Settings(_env_file=None, REDIS_URL=REDIS_URL))
    fake = get_redis(embedded())
    key = f"flowdesk:test:redis:{uuid.uuid4().hex}"
    fake.set(key, b"fake-only")
    assert real.get(key) is None
