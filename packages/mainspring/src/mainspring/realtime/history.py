"""The recent messages of one channel, for clients that come back after a gap."""

from __future__ import annotations

from collections import deque

from mainspring.realtime.message import Message, MessageId


class History:
    def __init__(self, size: int) -> None:
        self._messages: deque[Message] = deque(maxlen=size)

    def append(self, message: Message) -> None:
        self._messages.append(message)

    def since(self, after: MessageId, epoch: str, head: int) -> list[Message] | None:
        """Messages after `after`, or None when some of them are no longer here.

        `epoch` and `head` (the last offset published) describe the channel now.
        """
        return missed(list(self._messages), after, epoch, head)


def missed(kept: list[Message], after: MessageId, epoch: str, head: int) -> list[Message] | None:
    """What a client that last saw `after` missed, from the messages still `kept`; None: a gap."""
    if after.epoch != epoch or after.offset > head:
        return None
    if after.offset == head:
        return []
    if not kept or kept[0].id.offset > after.offset + 1:
        return None
    return [m for m in kept if m.id.offset > after.offset]
