"""The process's one pubsub connection: what it carries, and the listener that reads it.

Redis confirms each SUBSCRIBE and UNSUBSCRIBE with one reply per channel, in order. A
channel counts as subscribed once every command sent for it on the current connection is
confirmed and the last one was a SUBSCRIBE, so a stale confirmation (from before an
unsubscribe, or from a reconnect's resubscribe) can never vouch for a newer subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from mainspring.services.base import Service

if TYPE_CHECKING:
    from mainspring.realtime.backends.redis import RedisBackend

DOWN = (RedisError, OSError)
"""What Redis being unreachable looks like (TimeoutError is an OSError)."""


class Subscriptions:
    """The channels this process wants, and Redis's word that the connection carries them."""

    def __init__(
        self, name: Callable[[str], str], *, confirm_timeout: float, send_timeout: float
    ) -> None:
        self.wanted: set[str] = set()
        self.connection: AbstractConnection | None = None
        self._name = name
        self._confirm_timeout = confirm_timeout
        self._send_timeout = send_timeout
        self._pending: dict[str, int] = {}
        """Commands sent per channel on this connection and not yet confirmed."""
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        """Commands reach Redis in the order their counts were taken."""

    async def add(self, channel: str) -> None:
        """Want `channel`; return once Redis confirms it (the listener reads the reply)."""
        self.wanted.add(channel)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel] = confirmed
        try:
            async with asyncio.timeout(self._confirm_timeout):
                with suppress(*DOWN):  # a broken connection: the reconnect resubscribes
                    await self._send("SUBSCRIBE", [channel])
                await confirmed
        except BaseException:
            self.wanted.discard(channel)
            raise
        finally:
            if self._confirmed.get(channel) is confirmed:
                del self._confirmed[channel]

    async def remove(self, channel: str) -> None:
        """Stop wanting `channel`; its messages are ignored from now on, confirmed or not."""
        self.wanted.discard(channel)
        with suppress(*DOWN):  # a broken connection carries nothing any more
            async with asyncio.timeout(self._send_timeout):
                await self._send("UNSUBSCRIBE", [channel])

    async def attach(self, connection: AbstractConnection) -> set[str]:
        """Use a new connection and subscribe it to every wanted channel; returns those."""
        async with self._lock:
            self.connection = connection
            self._pending.clear()
            channels = set(self.wanted)
            if channels:
                await self._send_locked("SUBSCRIBE", channels)
            return channels

    def detach(self, connection: AbstractConnection) -> None:
        if self.connection is connection:
            self.connection = None
            self._pending.clear()

    def acknowledge(self, channel: str) -> bool:
        """Count one confirmation; True when `channel` is now subscribed as wanted."""
        left = self._pending.get(channel, 0) - 1
        if left > 0:
            self._pending[channel] = left
            return False
        self._pending.pop(channel, None)
        if channel not in self.wanted:
            return False
        confirmed = self._confirmed.get(channel)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)
        return True

    async def ping(self) -> None:
        async with self._lock:
            if self.connection is not None:
                await self.connection.send_command("PING")

    async def _send(self, command: str, channels: Iterable[str]) -> None:
        async with self._lock:
            await self._send_locked(command, channels)

    async def _send_locked(self, command: str, channels: Iterable[str]) -> None:
        connection = self.connection
        if connection is None:
            return
        names = []
        for channel in channels:
            self._pending[channel] = self._pending.get(channel, 0) + 1
            names.append(self._name(channel))
        await connection.send_command(command, *names)


@dataclass
class _Session:
    """One connection's life: whether it got connected, and how many replies it read."""

    connected: bool = False
    frames: int = 0


class RedisListener(Service):
    """Reads the pubsub connection and hands each message to the hub, in Redis's order.

    When the connection drops it reconnects with backoff (on the runtime's clock),
    resubscribes every wanted channel and, as each is confirmed, has the hub fetch what it
    missed from the channel's stream before reading on, so nothing is skipped or reordered.
    It loops instead of crashing: a Redis outage is expected, not a bug to give up on.
    """

    name = "realtime-redis-listener"

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    async def run(self) -> None:
        clock, attempt = self.context.clock, 0
        while not self.stopping:
            session, began = _Session(), clock.monotonic()
            try:
                await self._serve(session)
            except* DOWN as group:
                error = group.exceptions[0]
                if session.connected or attempt == 0:
                    self.log.warning(
                        "redis pubsub connection lost; reconnecting",
                        error=f"{type(error).__name__}: {error}",
                    )
            # Only a connection that lasted resets the backoff: one dropped at once is a flap.
            lasted = clock.monotonic() - began >= self.backend.health_interval
            attempt = 1 if session.connected and lasted else attempt + 1
            await self.sleep(self.backend.backoff.delay(attempt, self.context.rng))

    async def _serve(self, session: _Session) -> None:
        """Until asked to stop (its sleep raises ServiceStopped) or the connection fails."""
        connection = self.backend.pubsub_connection()
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(self._read(connection, session))
                await self._watch(session)
                reader.cancel()
        finally:
            self.backend.subscriptions.detach(connection)
            await connection.disconnect(nowait=True)

    async def _watch(self, session: _Session) -> None:
        """PING every health interval; a connection that stays silent for one is dead."""
        heard = -1
        while True:
            await self.sleep(self.backend.health_interval)
            if not session.connected:
                continue
            if session.frames == heard:
                raise RedisConnectionError("redis pubsub connection did not answer PING")
            heard = session.frames
            await self.backend.subscriptions.ping()

    async def _read(self, connection: AbstractConnection, session: _Session) -> None:
        backend = self.backend
        await connection.connect()  # type: ignore[no-untyped-call]
        to_repair = await backend.subscriptions.attach(connection)
        session.connected = True
        self.log.info("redis pubsub connected", channels=len(to_repair))
        while True:
            frame = await connection.read_response()
            session.frames += 1
            await self._handle(frame, to_repair)

    async def _handle(self, frame: Any, to_repair: set[str]) -> None:
        backend = self.backend
        if not isinstance(frame, list) or len(frame) < 3:
            return  # a PING reply
        kind, channel = frame[0], backend.channel_of(frame[1])
        if channel is None:
            return
        if kind == b"message":
            if channel in backend.subscriptions.wanted and backend.receive(channel, frame[2]):
                await backend.make_room()
            return
        confirmed = kind in (b"subscribe", b"unsubscribe") and (
            backend.subscriptions.acknowledge(channel)
        )
        if confirmed and channel in to_repair:
            # Before reading on: a live message delivered first would hide the gap.
            to_repair.discard(channel)
            await backend.repair(channel, backend.baseline(channel))
