"""What the hub needs from a backend: ids, history, and delivery to every process."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from mainspring.realtime.message import Message, MessageId, Resync
from mainspring.realtime.policy import ChannelPolicy
from mainspring.services.base import Service

Deliver = Callable[[Message], bool]
"""Hands a published message to this process's local subscribers. True means some queue is
past half its bounds, or many were filled since the last pause: the backend should
``await self.make_room()`` before the next delivery, so that writers drain a burst instead
of overflowing, and the event loop keeps serving everything else meanwhile."""
MakeRoom = Callable[[], Awaitable[None]]
"""The publisher's pause after a delivery that returned True (see `Hub.make_room`)."""
Repair = Callable[[str, MessageId | None], Awaitable[None]]
"""Asks the hub to fetch what a channel may have missed (after a backend reconnect), starting
from the given id when the hub has delivered nothing on it yet."""


class Backend(ABC):
    def bind(self, deliver: Deliver, repair: Repair, make_room: MakeRoom) -> None:
        self.deliver = deliver
        self.repair = repair
        self.make_room = make_room

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect. Called once by the hub before any other method."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; bounded in time by the runtime."""

    async def check(self) -> None:  # noqa: B027 - optional hook
        """Raise when the backend cannot publish; used by /ready."""

    def services(self) -> Sequence[Service]:
        """Background services the runtime supervises for this backend (listeners)."""
        return ()

    @abstractmethod
    async def publish(
        self, channel: str, data: bytes, key: str | None, policy: ChannelPolicy
    ) -> Message:
        """Give the message its id, keep it in history, and deliver it in every process."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving `channel` here. Once this returns, no later message is missed."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel` here; called when its last local subscriber leaves."""

    @abstractmethod
    async def since(
        self, channel: str, after: MessageId, policy: ChannelPolicy
    ) -> list[Message] | Resync:
        """The messages after `after`, or a Resync when some are no longer kept."""
