"""The hub: publish to channels, subscribe connections, resume from history.

A message is encoded once; publishing appends it to each local subscriber's outbox and
wakes that subscriber's writer. Which processes receive it, and where its history lives,
is the backend's business (memory for one process, Redis for many).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import pydantic_core
import structlog

from mainspring import lifecycle
from mainspring.realtime.backends.base import Backend
from mainspring.realtime.backends.memory import MemoryBackend
from mainspring.realtime.message import Message, MessageId, Notice, Resync
from mainspring.realtime.metrics import RealtimeMetrics, family, realtime_metrics
from mainspring.realtime.outbox import CloseReason, Outbox
from mainspring.realtime.policy import ChannelPolicy, Policies
from mainspring.realtime.turns import Turns
from mainspring.resources.base import Resource
from mainspring.services.base import Service

log = structlog.get_logger("mainspring.realtime")

CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


PUTS_PER_PAUSE = 2000
"""Deliveries after which a publisher pauses for the writers: about a millisecond of work."""


def check_channel(channel: str) -> str:
    if not CHANNEL_NAME.fullmatch(channel):
        raise ValueError(
            f"channel name must be 1-128 characters of [A-Za-z0-9._:-], got {channel[:40]!r}"
        )
    return channel


def replayable(missed: list[Message] | Resync, policy: ChannelPolicy) -> list[Message] | Resync:
    """A resync instead of a replay that the subscriber's queue could not hold: replaying
    it would overflow at once, and a `disconnect` client would reconnect into a loop."""
    if isinstance(missed, Resync) or policy.admits(missed):
        return missed
    return Resync(missed[0].channel, missed[-1].id)


class Hub(Resource):
    """Open it with the runtime: ``hub = await rt.open(Hub(policies={...}))``."""

    name = "hub"

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        policies: Mapping[str, ChannelPolicy] | None = None,
        default_policy: ChannelPolicy | None = None,
        metrics: RealtimeMetrics | None = None,
    ) -> None:
        self.backend = backend or MemoryBackend()
        self.policy = Policies(policies, default_policy)
        self.metrics = metrics or realtime_metrics()
        self.turns = Turns()
        self._puts = 0
        self._pressed = False
        self._local: dict[str, set[Subscriber]] = {}
        self._last_seen: dict[str, MessageId] = {}
        self._backend_channels: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._subscribers: set[Subscriber] = set()
        self._unhook_drain: Callable[[], None] | None = None
        self.backend.bind(self._deliver, self.repair, self.make_room)

    @classmethod
    def from_url(cls, redis_url: str | None, **options: Any) -> Hub:
        """The Redis backend when `redis_url` is set (several workers), else memory."""
        if not redis_url:
            return cls(**options)
        from mainspring.realtime.backends.redis import RedisBackend

        return cls(RedisBackend(redis_url), **options)

    # -- resource ------------------------------------------------------------------

    async def open(self) -> None:
        await self.backend.open()
        self._unhook_drain = lifecycle.on_draining_in_loop(
            lambda: self.close_all(CloseReason.SHUTDOWN)
        )

    async def close(self) -> None:
        if self._unhook_drain is not None:
            self._unhook_drain()
        self.close_all(CloseReason.SHUTDOWN)
        await self.backend.close()

    async def check(self) -> None:
        await self.backend.check()

    def services(self) -> Sequence[Service]:
        return self.backend.services()

    def close_all(self, reason: CloseReason) -> None:
        """End every connection now (shutdown: WebSockets close with 1012, streams end)."""
        for subscriber in list(self._subscribers):
            subscriber.outbox.close(reason)

    # -- publishing ----------------------------------------------------------------

    async def publish(self, channel: str, payload: Any, *, key: str | None = None) -> Message:
        """Encode `payload` as JSON once and deliver it to every subscriber of `channel`."""
        data = pydantic_core.to_json(payload)
        message = await self.backend.publish(
            check_channel(channel), data, key, self.policy(channel)
        )
        self.metrics.published.labels(family(channel)).inc()
        return message

    def _deliver(self, message: Message) -> bool:
        """Queue `message` for the local subscribers; True if the caller should yield."""
        channel = message.channel
        seen = self._last_seen.get(channel)
        if seen is not None and seen.epoch == message.id.epoch and message.id <= seen:
            return False
        self._last_seen[channel] = message.id
        subscribers = self._local.get(channel)
        if not subscribers:
            return False
        if seen is not None and seen.epoch != message.id.epoch:
            # The backend lost its history (an emptied Redis) without this process
            # reconnecting: what clients hold may be stale.
            for subscriber in subscribers:
                subscriber.outbox.put_control(Resync(channel, None))
        policy = self.policy(channel)
        pressed = False
        for subscriber in subscribers:
            pressed |= subscriber.outbox.put(message, policy)
        self._puts += len(subscribers)
        self._pressed |= pressed
        if pressed or self._puts >= PUTS_PER_PAUSE:
            self._puts = 0
            return True
        return False

    async def make_room(self) -> None:
        """A publisher's pause: one event-loop iteration, so that timers, sockets and the
        writers' turns go on; or, when some queue is past half its bounds, until the
        writers woken so far have all had their turn."""
        if self._pressed:
            self._pressed = False
            await self.turns.wait()
        else:
            await asyncio.sleep(0)

    async def repair(self, channel: str, after: MessageId | None = None) -> None:
        """Deliver what `channel` missed here, e.g. while the backend was unreachable;
        `after` is where to start when nothing was delivered on it here yet."""
        seen = self._last_seen.get(channel, after)
        if seen is None:
            return
        policy = self.policy(channel)
        missed = replayable(await self.backend.since(channel, seen, policy), policy)
        if isinstance(missed, Resync):
            log.warning("channel gap older than history", channel=channel, last_seen=str(seen))
            self.metrics.resyncs.labels(family(channel)).inc()
            if missed.latest is not None:
                self._last_seen[channel] = missed.latest
            for subscriber in self._local.get(channel, ()):
                subscriber.outbox.put_control(missed)
            return
        for message in missed:
            self._deliver(message)

    # -- subscribing ---------------------------------------------------------------

    def connect(self) -> Subscriber:
        """A subscriber for one connection; use it as an async context manager."""
        return Subscriber(self)

    async def _ensure_backend(self, channel: str) -> None:
        async with self._lock(channel):
            if channel not in self._backend_channels:
                await self.backend.subscribe(channel)
                self._backend_channels.add(channel)

    async def _release_backend(self, channel: str) -> None:
        async with self._lock(channel):
            if not self._local.get(channel) and channel in self._backend_channels:
                # Forget first: if this is cancelled, the next subscribe subscribes again.
                self._backend_channels.discard(channel)
                self._local.pop(channel, None)
                self._last_seen.pop(channel, None)
                await self.backend.unsubscribe(channel)

    def _lock(self, channel: str) -> asyncio.Lock:
        lock = self._locks.get(channel)
        if lock is None:
            lock = self._locks[channel] = asyncio.Lock()
        return lock


class Subscriber:
    """One connection's channels and its outbox, drained by the connection's writer."""

    __slots__ = ("_warned", "channels", "hub", "outbox")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.channels: set[str] = set()
        self.outbox = Outbox(on_drop=self._dropped, turns=hub.turns)
        self._warned = False

    async def __aenter__(self) -> Self:
        self.hub._subscribers.add(self)
        self.hub.metrics.subscribers.inc()
        if lifecycle.is_draining():  # too late for the hub's close_all: end at once
            self.outbox.close(CloseReason.SHUTDOWN)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.hub._subscribers.discard(self)
        self.hub.metrics.subscribers.dec()
        self.outbox.close(CloseReason.CLIENT_GONE)
        # Forget every channel before the first await: if this is cancelled, no channel
        # keeps a reference to this subscriber or stays subscribed on its behalf.
        channels = list(self.channels)
        for channel in channels:
            self._forget(channel)
        for channel in channels:
            await self.hub._release_backend(channel)

    async def subscribe(
        self, channel: str, last_id: MessageId | None = None, *, ack: Notice | None = None
    ) -> None:
        """Receive `channel` from now on; with `last_id`, first what came after it.

        `ack` is queued once the subscription is live, ahead of every message of the
        channel: a client that sees it knows nothing published later can be missed.
        """
        hub = self.hub
        check_channel(channel)
        if channel in self.channels:
            if ack is not None:  # already live: the client still waits for its answer
                self.outbox.put_control(ack)
            return
        # Registered before any await: nothing published from here on can be missed.
        self.channels.add(channel)
        hub._local.setdefault(channel, set()).add(self)
        self.outbox.hold(channel)
        try:
            await hub._ensure_backend(channel)
            policy = hub.policy(channel)
            missed: list[Message] | Resync = []
            if last_id is not None:
                missed = replayable(await hub.backend.since(channel, last_id, policy), policy)
                if isinstance(missed, Resync):
                    hub.metrics.resyncs.labels(family(channel)).inc()
        except BaseException:
            self._forget(channel)
            # The backend may be subscribed already; with no one left it must be released.
            await hub._release_backend(channel)
            raise
        if ack is not None:
            self.outbox.put_control(ack)
        replay = [missed] if isinstance(missed, Resync) else missed
        self.outbox.release(channel, replay, policy, after=last_id)

    async def unsubscribe(self, channel: str) -> None:
        if channel in self.channels:
            self._forget(channel)
            await self.hub._release_backend(channel)

    def _forget(self, channel: str) -> None:
        self.channels.discard(channel)
        self.outbox.release_nothing(channel)
        local = self.hub._local.get(channel)
        if local is not None:
            local.discard(self)

    def _dropped(self, channel: str, reason: CloseReason | None, count: int) -> None:
        metrics, fam = self.hub.metrics, family(channel)
        if reason is CloseReason.SLOW:
            metrics.slow_disconnects.labels(fam).inc()
        else:
            metrics.dropped.labels(fam).inc(count)
        if not self._warned:
            self._warned = True
            log.warning(
                "subscriber fell behind",
                channel=channel,
                action="disconnect" if reason is CloseReason.SLOW else "drop",
                queued=len(self.outbox),
                queued_bytes=self.outbox.queued_bytes,
            )
