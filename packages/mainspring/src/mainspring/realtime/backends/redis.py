"""Channels shared by every process through Redis: ids and history in one stream per
channel, live delivery through one pubsub connection per process.

A publish is one Lua script: it numbers the message, appends it to the channel's stream and
publishes it, atomically, so every process receives a channel's messages in offset order.
The publishing process gets its own message back from the pubsub connection like every other
process, never directly, so the order is the same everywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from mainspring.realtime.backends.base import Backend
from mainspring.realtime.backends.redis_pubsub import RedisListener, Subscriptions
from mainspring.realtime.backends.redis_scripts import HEAD, PUBLISH
from mainspring.realtime.history import missed
from mainspring.realtime.message import Message, MessageId, Resync
from mainspring.realtime.policy import ChannelPolicy
from mainspring.services.base import Service
from mainspring.services.policy import Backoff

log = structlog.get_logger("mainspring.realtime")

RECONNECT = Backoff(initial=0.2, cap=5.0)
"""Between attempts to get the pubsub connection back."""


class RedisBackend(Backend):
    """For channel C it keeps, under `prefix`: ``{prefix}:{C}:epoch`` (a random token, new
    whenever Redis lost the channel), ``{prefix}:{C}:offset`` (the last offset given) and
    ``{prefix}:{C}:stream`` (the last `history` messages); messages travel on the pubsub
    channel ``{prefix}:{C}``. Nothing expires: an idle channel costs three small keys.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "mainspring:rt",
        socket_timeout: float = 5.0,
        subscribe_timeout: float = 10.0,
        health_interval: float = 10.0,
        backoff: Backoff = RECONNECT,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        """Bounds connecting and each command; the pubsub connection waits for messages."""
        self.subscribe_timeout = subscribe_timeout
        """How long `subscribe` waits for Redis to confirm (it may be reconnecting)."""
        self.health_interval = health_interval
        """The pubsub connection is pinged this often, and dropped after a silent interval."""
        self.backoff = backoff
        self.subscriptions = Subscriptions(
            self.pubsub_name, confirm_timeout=subscribe_timeout, send_timeout=socket_timeout
        )
        self._pubsub_head = f"{prefix}:{{".encode()
        self._baselines: dict[str, MessageId] = {}
        self._client: aioredis.Redis | None = None
        self._pubsub_pool: ConnectionPool | None = None
        self._head: AsyncScript | None = None
        self._publish: AsyncScript | None = None
        self._listener = RedisListener(self)

    # -- naming --------------------------------------------------------------------

    def pubsub_name(self, channel: str) -> str:
        # The braces are a hash tag: a channel's keys share one Redis Cluster slot.
        return f"{self.prefix}:{{{channel}}}"

    def channel_of(self, name: object) -> str | None:
        """The channel a pubsub name belongs to; None for a name not ours."""
        head = self._pubsub_head
        if isinstance(name, bytes) and name.startswith(head) and name.endswith(b"}"):
            return name[len(head) : -1].decode()
        return None

    def _keys(self, channel: str) -> list[str]:
        base = self.pubsub_name(channel)
        return [f"{base}:epoch", f"{base}:offset", f"{base}:stream"]

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect and PING once, so a wrong URL fails startup rather than a publish."""
        # No retries: a publish retried after its reply was lost would be published twice.
        client = aioredis.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            await self._ping(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._head = client.register_script(HEAD)
        self._publish = client.register_script(PUBLISH)
        self._pubsub_pool = ConnectionPool.from_url(
            # These two may not come from the URL, whose options win over the arguments.
            _without_options(self.url, "socket_timeout", "protocol"),
            socket_timeout=None,  # waiting for messages is not a timeout; the PINGs are
            protocol=2,  # RESP2: messages come back as replies, not as RESP3 pushes
            socket_connect_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=f"mainspring-realtime-{os.getpid()}",
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        connection = self.subscriptions.connection
        async with asyncio.timeout(self.socket_timeout):
            if connection is not None:
                await connection.disconnect(nowait=True)
            if client is not None:
                await client.aclose()

    async def check(self) -> None:
        await self._ping(self.client)

    async def _ping(self, client: aioredis.Redis) -> None:
        async with asyncio.timeout(self.socket_timeout):
            await client.ping()

    def services(self) -> Sequence[Service]:
        return (self._listener,)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("the Redis backend is not open; open its Hub with the runtime")
        return self._client

    def pubsub_connection(self) -> AbstractConnection:
        """A new connection for the listener, never pooled: it only ever subscribes."""
        if self._pubsub_pool is None:
            raise RuntimeError("the Redis backend is not open; open its Hub with the runtime")
        make = self._pubsub_pool.make_connection
        connection: AbstractConnection = make()  # type: ignore[no-untyped-call]
        return connection

    # -- publishing ----------------------------------------------------------------

    async def publish(
        self, channel: str, data: bytes, key: str | None, policy: ChannelPolicy
    ) -> Message:
        assert self._publish is not None, "open() first"
        raw = await self._publish(
            keys=self._keys(channel),
            args=[_new_epoch(), policy.history, json.dumps(key), data, self.pubsub_name(channel)],
            client=self.client,
        )
        return Message(channel, MessageId.parse(raw.decode()), data, key)

    def receive(self, channel: str, payload: object) -> bool:
        """A message from the pubsub connection: to the hub, or to the log when malformed.
        True when the hub asks the reader to yield before the next one."""
        try:
            message = _decode(channel, payload)
        except (ValueError, TypeError) as error:
            log.warning("malformed realtime message skipped", channel=channel, error=str(error))
            return False
        return self.deliver(message)

    # -- subscribing ---------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        assert self._head is not None, "open() first"
        epoch, offset = await self._head(
            keys=self._keys(channel), args=[_new_epoch()], client=self.client
        )
        # Taken before subscribing, so never past a message the pubsub connection delivers.
        self._baselines[channel] = MessageId(epoch.decode(), int(offset))
        try:
            await self.subscriptions.add(channel)
        except BaseException:
            self._baselines.pop(channel, None)
            raise

    async def unsubscribe(self, channel: str) -> None:
        self._baselines.pop(channel, None)
        await self.subscriptions.remove(channel)

    def baseline(self, channel: str) -> MessageId | None:
        """Where `channel` stood when this process subscribed to it: where a repair starts
        when nothing was delivered here since."""
        return self._baselines.get(channel)

    async def since(
        self, channel: str, after: MessageId, policy: ChannelPolicy
    ) -> list[Message] | Resync:
        epoch_key, offset_key, stream_key = self._keys(channel)
        start = min(after.offset + 1, 2**63 - 1)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(epoch_key)
            pipe.get(offset_key)
            pipe.xrange(stream_key, min=str(start), count=policy.history)
            raw_epoch, raw_head, entries = await pipe.execute()
        if raw_epoch is None:
            return Resync(channel, None)
        epoch, head = raw_epoch.decode(), int(raw_head or 0)
        latest = MessageId(epoch, head)
        if head - after.offset > policy.history:
            return Resync(channel, latest)
        kept = [_from_entry(channel, epoch, entry) for entry in entries]
        found = missed(kept, after, epoch, head)
        return Resync(channel, latest) if found is None else found


def _without_options(url: str, *names: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _new_epoch() -> str:
    return secrets.token_hex(6)


def _decode(channel: str, payload: object) -> Message:
    """``["<id>",<key>]\\n<data>``, as the publish script sends it."""
    if not isinstance(payload, bytes):
        raise TypeError(f"expected bytes, got {type(payload).__name__}")
    head, newline, data = payload.partition(b"\n")
    id_text, key = json.loads(head)
    if not newline or not data or not isinstance(id_text, str):
        raise ValueError("not a message envelope")
    if key is not None and not isinstance(key, str):
        raise ValueError("the key must be a string or null")
    data.decode()  # every frame built from it decodes it; a bad one is refused here
    return Message(channel, MessageId.parse(id_text), data, key)


def _from_entry(channel: str, epoch: str, entry: Any) -> Message:
    entry_id, fields = entry
    offset = int(entry_id.split(b"-", 1)[0])
    return Message(channel, MessageId(epoch, offset), fields[b"d"], json.loads(fields[b"k"]))
