"""Redis against the real server (`redis_url` comes from conftest.py)."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from mainspring.resources import Redis


@pytest.mark.redis
async def test_open_check_set_get_and_close(redis_url: str) -> None:
    redis = Redis(redis_url)
    await redis.open()
    try:
        await redis.check()
        key = f"mainspring:test:{uuid.uuid4().hex}"
        await redis.client.set(key, b"value", ex=60)
        assert await redis.client.get(key) == b"value"
        await redis.client.delete(key)
    finally:
        await redis.close()
    with pytest.raises(RuntimeError, match="not open"):
        await redis.check()
    with pytest.raises(RuntimeError, match="not open"):
        _ = redis.client


async def test_unreachable_server_fails_open_and_check_promptly() -> None:
    redis = Redis("redis://127.0.0.1:1/0", socket_timeout=1)
    with pytest.raises((RedisConnectionError, TimeoutError)):
        await redis.open()
    with pytest.raises(RuntimeError, match="not open"):
        await redis.check()
