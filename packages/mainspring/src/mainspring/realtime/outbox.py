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
from mainspring.realtime.turns import Turns


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
    """A `latest_only` entry: a newer message with its key replaces the item in place."""

    __slots__ = ("item",)

    def __init__(self, item: Message) -> None:
        self.item = item


def _item(entry: Item | _Slot) -> Item:
    return entry.item if type(entry) is _Slot else entry  # type: ignore[return-value]


BATCH = 32
"""Items a writer takes per turn: with `Turns`, what bounds one event-loop iteration."""


class Outbox:
    """Items are queued as they are, except `latest_only` ones, which sit in a `_Slot`."""

    __slots__ = (
        "_held",
        "_latest",
        "_on_drop",
        "_owed_turn",
        "_queue",
        "_turns",
        "_waiter",
        "_woken",
        "closed",
        "on_close",
        "queued_bytes",
    )

    def __init__(self, on_drop: DropCallback | None = None, turns: Turns | None = None) -> None:
        self._queue: deque[Item | _Slot] = deque()
        self._latest: dict[tuple[str, str], _Slot] = {}
        self._held: dict[str, list[Message]] = {}
        self.queued_bytes = 0
        self.closed: CloseReason | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False
        self._owed_turn = False
        self._turns = turns
        self._on_drop = on_drop
        self.on_close: Callable[[CloseReason], None] | None = None
        """Called once when the outbox closes, e.g. to interrupt a writer stuck in a send."""

    def __len__(self) -> int:
        return len(self._queue)

    # -- producer side -------------------------------------------------------------

    def put(self, message: Message, policy: ChannelPolicy) -> bool:
        """Queue `message`; True when the queue is past half its bounds, so that a publisher
        in a burst yields and lets the writers catch up before anyone overflows."""
        if self.closed is not None:
            return False
        if self._held and message.channel in self._held:
            self._held[message.channel].append(message)
            return False
        if message.key is not None and policy.overflow is Overflow.LATEST_ONLY:
            self._put_latest(message)
        else:
            self._queue.append(message)
            self.queued_bytes += len(message.data)
            if self._waiter is not None:
                self._wake()
        count, size = len(self._queue), self.queued_bytes
        if count > policy.max_lag or size > policy.max_queued_bytes:
            self._bound(message.channel, policy)
        return count * 2 > policy.max_lag or size * 2 > policy.max_queued_bytes

    def _put_latest(self, message: Message) -> None:
        key = (message.channel, message.key or "")
        slot = self._latest.get(key)
        if slot is not None:
            self.queued_bytes += message.size - slot.item.size
            slot.item = message
            return
        slot = self._latest[key] = _Slot(message)
        self._append(slot, message.size)

    def put_control(self, item: Item) -> None:
        """Resyncs and notices bypass the bounds: they are few, and small."""
        if self.closed is None:
            self._append(item, item.size)

    def hold(self, channel: str) -> None:
        """Keep live messages of `channel` aside while its missed messages are fetched."""
        self._held.setdefault(channel, [])

    def release(
        self,
        channel: str,
        replay: Sequence[Item],
        policy: ChannelPolicy,
        after: MessageId | None = None,
    ) -> None:
        """Queue `replay`, then the held live messages not already in it or at or before
        `after` (the client's resume point), in order. With several processes a live
        message can arrive here after the client already had it from history."""
        held = self._held.pop(channel, [])
        last = max((i for i in map(_last_id, replay) if i is not None), default=after)
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

    def _append(self, entry: Item | _Slot, size: int) -> None:
        self._queue.append(entry)
        self.queued_bytes += size
        self._wake()

    def _bound(self, channel: str, policy: ChannelPolicy) -> None:
        if policy.overflow is Overflow.DISCONNECT:
            if self._on_drop is not None:
                self._on_drop(channel, CloseReason.SLOW, 0)
            self.close(CloseReason.SLOW)
            return
        # Only this channel's messages are dropped: another channel's policy may promise
        # no silent loss, and an ack or a resync is the client's only word on its state.
        dropped = 0
        skipped: list[Item | _Slot] = []
        queue = self._queue
        while len(queue) > 1 and (
            len(queue) + len(skipped) > policy.max_lag
            or self.queued_bytes > policy.max_queued_bytes
        ):
            entry = queue.popleft()
            item = _item(entry)
            if isinstance(item, Message) and item.channel == channel:
                self._forget(entry)
                dropped += 1
            else:
                skipped.append(entry)
        queue.extendleft(reversed(skipped))
        if dropped and self._on_drop is not None:
            self._on_drop(channel, None, dropped)

    def _forget(self, entry: Item | _Slot) -> Item:
        if type(entry) is _Slot:
            item = entry.item
            key = (item.channel, item.key or "")
            if self._latest.get(key) is entry:
                del self._latest[key]
        else:
            item = entry  # type: ignore[assignment]
        self.queued_bytes -= item.size
        return item

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done() or self._woken:
            return
        if self._turns is None:
            waiter.set_result(None)
        else:
            self._woken = True
            self._turns.wake(waiter)

    # -- writer side ---------------------------------------------------------------

    async def _wait(self, *, turn: bool = False) -> None:
        """Until something is queued, the outbox closes, or `_wake` is called; with `turn`,
        only until this writer's next turn."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._woken = False
        if turn:
            self._wake()
        try:
            await waiter
        finally:
            self._waiter = None

    async def get(self, limit: int = BATCH) -> list[Item]:
        """Up to `limit` queued items, oldest first; waits when empty. Raises Closed once
        closed. A writer that left items behind waits for its next turn first."""
        if self._owed_turn and self.closed is None:
            self._owed_turn = False
            await self._wait(turn=True)
        # A close is final even with items queued (the client resumes from history),
        # except DONE, which ends the stream after what is queued.
        while self.closed is None and not self._queue:
            await self._wait()
        if self.closed is not None and (self.closed is not CloseReason.DONE or not self._queue):
            raise Closed(self.closed)
        queue, forget = self._queue, self._forget
        items = [forget(queue.popleft()) for _ in range(min(limit, len(queue)))]
        self._owed_turn = bool(queue)
        return items
