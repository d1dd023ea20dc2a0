"""RedisLeaseBackend against a real Redis, through a cuttable proxy for outages."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import suppress
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from lease_support import acquire_within, holder_process
from redis.exceptions import RedisError

from mainspring.leases import RedisLeaseBackend

pytestmark = pytest.mark.redis


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(client: aioredis.Redis) -> AsyncIterator[str]:
    namespace = f"test-{uuid.uuid4().hex}"
    yield namespace
    keys = [key async for key in client.scan_iter(match=f"mainspring:{namespace}:*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def backend(redis_url: str, namespace: str) -> AsyncIterator[RedisLeaseBackend]:
    backend = RedisLeaseBackend(redis_url, namespace, ttl=5.0)
    yield backend
    await backend.close()


class Proxy:
    """A TCP relay to Redis that can be cut, to play a Redis outage for one client."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._url = parts
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.down = False

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        userinfo = self._url.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        return self._url._replace(netloc=netloc).geturl()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until `restore`."""
        self.down = True
        for writer in self._writers:
            writer.close()

    def restore(self) -> None:
        self.down = False

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, up_writer}
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer))
                tg.create_task(self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


async def test_lease_is_exclusive_until_released(redis_url: str, namespace: str) -> None:
    first = RedisLeaseBackend(redis_url, namespace)
    second = RedisLeaseBackend(redis_url, namespace)
    lease = await first.try_acquire("svc", "a")
    assert lease is not None
    assert (lease.name, lease.holder) == ("svc", "a")
    assert await second.try_acquire("svc", "b") is None
    assert await first.try_acquire("svc", "a") is None
    assert await second.try_acquire("other", "b") is not None

    await lease.release()
    assert await second.try_acquire("svc", "b") is not None
    await first.close()
    await second.close()


async def test_key_layout_and_ttl(
    backend: RedisLeaseBackend, client: aioredis.Redis, namespace: str
) -> None:
    lease = await backend.try_acquire("svc", "host:1")
    assert lease is not None
    key = f"mainspring:{namespace}:lease:svc"
    value = json.loads(await client.get(key))
    assert value["holder"] == "host:1"
    assert value["id"]
    assert 0 < await client.pttl(key) <= 5000
    assert lease.renew_interval == pytest.approx(5.0 / 3)
    assert lease.grace == pytest.approx(5.0 - 5.0 / 3)


async def test_fencing_token_grows_across_terms(redis_url: str, namespace: str) -> None:
    backends = [RedisLeaseBackend(redis_url, namespace) for _ in range(2)]
    tokens = []
    for _ in range(3):
        for backend in backends:
            lease = await backend.try_acquire("svc", "a")
            assert lease is not None
            tokens.append(lease.token)
            await lease.release()
    assert tokens == sorted(set(tokens))
    assert tokens[0] >= 1
    for backend in backends:
        await backend.close()


async def test_renew_extends_the_term(backend: RedisLeaseBackend, client: aioredis.Redis) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    key = backend.key_for("svc")
    await client.pexpire(key, 100_000)
    assert await lease.renew() is True
    assert await client.pttl(key) <= 5000
    await lease.release()
    assert await lease.renew() is False
    assert await client.exists(key) == 0


async def test_holder_names_the_holder_and_none_when_free(backend: RedisLeaseBackend) -> None:
    assert await backend.holder("svc") is None
    lease = await backend.try_acquire("svc", "host-a:42")
    assert lease is not None
    assert await backend.holder("svc") == "host-a:42"
    await lease.release()
    assert await backend.holder("svc") is None


async def test_deleted_key_means_lost(backend: RedisLeaseBackend, client: aioredis.Redis) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    await client.delete(backend.key_for("svc"))
    assert await lease.renew() is False


async def test_overwritten_key_means_lost_and_is_left_alone(
    backend: RedisLeaseBackend, client: aioredis.Redis
) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    key = backend.key_for("svc")
    await client.set(key, json.dumps({"holder": "b", "id": "other"}), px=5000)
    assert await lease.renew() is False
    await lease.release()
    assert await backend.holder("svc") == "b"


async def test_outage_longer_than_the_ttl_loses_the_lease(redis_url: str, namespace: str) -> None:
    standby = RedisLeaseBackend(redis_url, namespace, ttl=1.0)
    async with Proxy(redis_url) as proxy:
        backend = RedisLeaseBackend(proxy.url, namespace, ttl=1.0)
        lease = await backend.try_acquire("svc", "a")
        assert lease is not None
        assert await lease.renew() is True
        assert lease.grace < backend.ttl

        proxy.cut()
        with pytest.raises(RedisError):
            await lease.renew()
        # The holder has stepped down after `grace`; once the TTL has run out too,
        # a standby takes over and the old holder learns it lost the lease.
        taken = await acquire_within(standby, "svc", "b")
        assert taken.token > lease.token
        proxy.restore()
        assert await lease.renew() is False
        assert await standby.holder("svc") == "b"
        await backend.close()
    await standby.close()


async def test_unreachable_server_raises_promptly() -> None:
    backend = RedisLeaseBackend("redis://127.0.0.1:1/0", f"test-{uuid.uuid4().hex}")
    async with asyncio.timeout(10):
        with pytest.raises(RedisError):
            await backend.try_acquire("svc", "a")
    await backend.close()


async def test_a_given_client_is_left_open(client: aioredis.Redis, namespace: str) -> None:
    backend = RedisLeaseBackend(client, namespace)
    assert await backend.try_acquire("svc", "a") is not None
    await backend.close()
    assert await backend.holder("svc") is None
    assert await client.ping()


async def test_standby_takes_over_when_the_holder_process_dies(
    redis_url: str, namespace: str
) -> None:
    backend = RedisLeaseBackend(redis_url, namespace, ttl=1.0)
    async with holder_process(redis_url, namespace, "svc", "--ttl", "2.0") as (proc, token):
        assert await backend.try_acquire("svc", "standby") is None
        holder = f"{socket.gethostname()}:{proc.pid} (lease-holder, namespace {namespace})"
        assert await backend.holder("svc") == holder
        proc.kill()
        await proc.wait()
        lease = await acquire_within(backend, "svc", "standby")
    assert lease.token > token
    await backend.close()
