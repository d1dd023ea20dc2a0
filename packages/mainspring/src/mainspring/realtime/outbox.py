"""One subscriber's bounded queue, drained by that subscriber's single writer.

Publishing appends to each outbox and wakes its writer: no task per message per client,
and a slow client costs only its own bounded queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum

from mainspring.realtime.message import Item, Message, MessageId, Resync
from mainspring.realtime.policy import ChannelPolicy, Overflow


class CloseReason(StrEnum):
    SLOW = "slow consumer"
    SHUTDOWN = "server shutting down"
    CLIENT_GONE = "client gone"
    PROTOCOL = "protocol violation"
    DONE = "stream complete"
    """The producer finished: what is queued is still delivered, then the stream ends."""


class Closed(Exception):
    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _last_id(item: Item) -> MessageId | None:
    if isinstance(item, Message):
        return item.id
    return item.latest if isinstance(item, Resync) else None


DropCallback = Callable[[str, "CloseReason | None", int], None]
"""Told of drops on a channel: reason SLOW for a disconnect, None for `count` discarded messages."""


class _Slot:
    """A queue entry; `latest_only` replaces its item in place, keeping its position."""

    __slots__ = ("item",)

    def __init__(self, item: Item) -> None:
        self.item = item


class Outbox:
    def __init__(self, on_drop: DropCallback | None = None) -> None:
        self._slots: deque[_Slot] = deque()
        self._latest: dict[tuple[str, str], _Slot] = {}
        self._held: dict[str, list[Message]] = {}
        self.queued_bytes = 0
        self.closed: CloseReason | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_drop = on_drop
        self.on_close: Callable[[CloseReason], None] | None = None
        """Called once when the outbox closes, e.g. to interrupt a writer stuck in a send."""

    def __len__(self) -> int:
        return len(self._slots)

    # -- producer side -------------------------------------------------------------

    def put(self, message: Message, policy: ChannelPolicy) -> bool:
        """Queue `message`; True when the queue is past half its bounds, so that a publisher
        in a burst yields and lets the writers catch up before anyone overflows."""
        if self.closed is not None:
            return False
        held = self._held.get(message.channel)
        if held is not None:
            held.append(message)
            return False
        if policy.overflow is Overflow.LATEST_ONLY and message.key is not None:
            slot = self._latest.get((message.channel, message.key))
            if slot is not None:
                self.queued_bytes += message.size - slot.item.size
                slot.item = message
            else:
                slot = self._append(message)
                self._latest[(message.channel, message.key)] = slot
        else:
            self._append(message)
        self._bound(message.channel, policy)
        return len(self._slots) * 2 > policy.max_lag or (
            self.queued_bytes * 2 > policy.max_queued_bytes
        )

    def put_control(self, item: Item) -> None:
        """Resyncs and notices bypass the bounds: they are few, and small."""
        if self.closed is None:
            self._append(item)

    def hold(self, channel: str) -> None:
        """Keep live messages of `channel` aside while its missed messages are fetched."""
        self._held.setdefault(channel, [])

    def release(self, channel: str, replay: Sequence[Item], policy: ChannelPolicy) -> None:
        """Queue `replay`, then the held live messages not already in it, in order."""
        held = self._held.pop(channel, [])
        last = max((i for i in map(_last_id, replay) if i is not None), default=None)
        for item in replay:
            if isinstance(item, Message):
                self.put(item, policy)
            else:
                self.put_control(item)
        for message in held:
            if last is None or message.id.epoch != last.epoch or message.id > last:
                self.put(message, policy)

    def release_nothing(self, channel: str) -> None:
        self._held.pop(channel, None)

    def close(self, reason: CloseReason) -> None:
        if self.closed is None:
            self.closed = reason
            self._wake()
            if self.on_close is not None:
                self.on_close(reason)

    def _append(self, item: Item) -> _Slot:
        slot = _Slot(item)
        self._slots.append(slot)
        self.queued_bytes += item.size
        self._wake()
        return slot

    def _bound(self, channel: str, policy: ChannelPolicy) -> None:
        if len(self._slots) <= policy.max_lag and self.queued_bytes <= policy.max_queued_bytes:
            return
        if policy.overflow is Overflow.DISCONNECT:
            if self._on_drop is not None:
                self._on_drop(channel, CloseReason.SLOW, 0)
            self.close(CloseReason.SLOW)
            return
        dropped = 0
        while len(self._slots) > 1 and (
            len(self._slots) > policy.max_lag or self.queued_bytes > policy.max_queued_bytes
        ):
            self._forget(self._slots.popleft())
            dropped += 1
        if dropped and self._on_drop is not None:
            self._on_drop(channel, None, dropped)

    def _forget(self, slot: _Slot) -> None:
        item = slot.item
        self.queued_bytes -= item.size
        if isinstance(item, Message) and item.key is not None:
            key = (item.channel, item.key)
            if self._latest.get(key) is slot:
                del self._latest[key]

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- writer side ---------------------------------------------------------------

    async def _wait(self) -> None:
        """Until something is queued, the outbox closes, or `_wake` is called."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def get(self) -> list[Item]:
        """Everything queued, oldest first; waits when empty. Raises Closed once closed."""
        # A close is final even with messages queued (the client resumes from history),
        # except DONE, which ends the stream after what is queued.
        while self.closed is None and not self._slots:
            await self._wait()
        if self.closed is not None and (self.closed is not CloseReason.DONE or not self._slots):
            raise Closed(self.closed)
        items = []
        while self._slots:
            slot = self._slots.popleft()
            self._forget(slot)
            items.append(slot.item)
        return items
