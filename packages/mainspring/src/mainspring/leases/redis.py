"""Leases as Redis keys with a TTL: any number of hosts sharing one Redis.

A term is a key set with NX and a random value; only the holder of that value
may extend or delete it (compare-and-set in Lua). A holder that cannot renew
steps down after `grace`, which ends before the TTL so that a standby can never
take over while the old holder still believes it holds the lease.
"""

from __future__ import annotations

import functools
import json
import secrets
from importlib.resources import files

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mainspring.leases.base import Lease, LeaseBackend

log = structlog.get_logger("mainspring.leases")

_TIMEOUT = 2.0
"""Socket connect and read timeout of an owned client: an unreachable server fails fast."""


@functools.cache
def _script_text(name: str) -> str:
    return (files("mainspring.leases") / f"redis_{name}.lua").read_text(encoding="utf-8")


class RedisLease(Lease):
    """A term held through a key whose value only this process knows."""

    def __init__(
        self, backend: RedisLeaseBackend, name: str, holder: str, token: int, key: str, value: str
    ) -> None:
        self.name = name
        self.holder = holder
        self.token = token
        self.renew_interval = backend.ttl / 3
        self.grace = backend.ttl - self.renew_interval
        self._backend = backend
        self._key = key
        self._value = value

    async def renew(self) -> bool:
        renewed = await self._backend._renew(
            keys=[self._key], args=[self._value, self._backend.ttl_ms]
        )
        return bool(renewed)

    async def release(self) -> None:
        self._backend._held.discard(self)
        try:
            await self._backend._release(keys=[self._key], args=[self._value])
        except Exception as exc:
            log.warning("lease release failed", lease=self.name, error=str(exc))


class RedisLeaseBackend(LeaseBackend):
    """Leases under ``mainspring:{namespace}:lease:{name}``, fencing counters (which
    never expire) under ``mainspring:{namespace}:fence:{name}``.

    Given a URL it owns its client and closes it; given a client it leaves it open.
    """

    def __init__(
        self, url_or_client: str | aioredis.Redis, namespace: str, ttl: float = 10.0
    ) -> None:
        if isinstance(url_or_client, str):
            self._client = aioredis.Redis.from_url(
                url_or_client,
                socket_connect_timeout=_TIMEOUT,
                socket_timeout=_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
            )
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self.namespace = namespace
        self.ttl = ttl
        self.ttl_ms = max(1, round(ttl * 1000))
        self.retry_interval = min(1.0, ttl / 3)
        self._acquire = self._client.register_script(_script_text("acquire"))
        self._renew = self._client.register_script(_script_text("renew"))
        self._release = self._client.register_script(_script_text("release"))
        self._held: set[RedisLease] = set()

    def key_for(self, name: str) -> str:
        return f"mainspring:{self.namespace}:lease:{name}"

    def fence_key_for(self, name: str) -> str:
        return f"mainspring:{self.namespace}:fence:{name}"

    async def try_acquire(self, name: str, holder: str) -> RedisLease | None:
        key = self.key_for(name)
        value = json.dumps({"holder": holder, "id": secrets.token_hex(16)})
        token = await self._acquire(keys=[key, self.fence_key_for(name)], args=[value, self.ttl_ms])
        if not token:
            return None
        lease = RedisLease(self, name, holder, int(token), key, value)
        self._held.add(lease)
        return lease

    async def holder(self, name: str) -> str | None:
        raw = await self._client.get(self.key_for(name))
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            holder = json.loads(text).get("holder")
        except (ValueError, AttributeError):
            return text
        return holder if isinstance(holder, str) else text

    async def close(self) -> None:
        for lease in list(self._held):
            await lease.release()
        if self._owns_client:
            await self._client.aclose()
