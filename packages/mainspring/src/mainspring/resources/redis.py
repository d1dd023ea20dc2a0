"""`Redis`: one pooled `redis.asyncio` client shared by the whole process."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import structlog

from mainspring.resources.base import Resource

log = structlog.get_logger("mainspring.resources")


class Redis(Resource):
    """Use it directly: ``await redis.client.get("key")``.

    Each command waits at most `socket_timeout` on the socket; pooled connections idle
    longer than `health_check_interval` seconds are pinged before reuse, so a connection
    a server or proxy dropped is replaced instead of failing a command.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "redis",
        socket_timeout: float = 5.0,
        health_check_interval: int = 30,
    ) -> None:
        self.url = url
        self.name = name
        self.socket_timeout = socket_timeout
        """Bounds connecting, each command, and the whole of `check()`."""
        self.health_check_interval = health_check_interval
        self._client: aioredis.Redis | None = None

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError(
                f"Redis {self.name!r} is not open; open it with `await runtime.open(redis)`"
            )
        return self._client

    async def open(self) -> None:
        """Create the pool and PING once, so a wrong URL fails startup, not a request."""
        if self._client is not None:
            raise RuntimeError(f"Redis {self.name!r} is already open")
        client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            health_check_interval=self.health_check_interval,
        )
        try:
            await self._ping(client)
        except BaseException:
            await client.aclose(close_connection_pool=True)
            raise
        self._client = client
        log.info("redis opened", name=self.name)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def check(self) -> None:
        await self._ping(self.client)

    async def _ping(self, client: aioredis.Redis) -> None:
        async with asyncio.timeout(self.socket_timeout):
            await client.ping()
