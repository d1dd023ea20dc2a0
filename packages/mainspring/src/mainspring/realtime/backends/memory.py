"""The default backend: one process, history in memory, a new epoch per process."""

from __future__ import annotations

import secrets

from mainspring.realtime.backends.base import Backend
from mainspring.realtime.history import History
from mainspring.realtime.message import Message, MessageId, Resync
from mainspring.realtime.policy import ChannelPolicy


class MemoryBackend(Backend):
    def __init__(self) -> None:
        self.epoch = secrets.token_hex(4)
        self._heads: dict[str, int] = {}
        self._histories: dict[str, History] = {}

    async def publish(
        self, channel: str, data: bytes, key: str | None, policy: ChannelPolicy
    ) -> Message:
        offset = self._heads.get(channel, 0) + 1
        self._heads[channel] = offset
        message = Message(channel, MessageId(self.epoch, offset), data, key)
        history = self._histories.get(channel)
        if history is None:
            history = self._histories[channel] = History(policy.history)
        history.append(message)
        if self.deliver(message):
            await self.make_room()
        return message

    async def subscribe(self, channel: str) -> None:
        pass

    async def unsubscribe(self, channel: str) -> None:
        pass

    async def since(
        self, channel: str, after: MessageId, policy: ChannelPolicy
    ) -> list[Message] | Resync:
        head = self._heads.get(channel, 0)
        history = self._histories.get(channel)
        missed = history.since(after, self.epoch, head) if history else None
        if missed is None:
            return Resync(channel, MessageId(self.epoch, head) if head else None)
        return missed
