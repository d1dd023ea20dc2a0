"""Messages: encoded once at publish, then shared by every subscriber, history and backend."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, order=True)
class MessageId:
    """``epoch:offset``. The epoch changes when history is lost (a new process for the memory
    backend, an emptied Redis), so an id from before can never be mistaken for a later one."""

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> MessageId:
        epoch, sep, offset = text.rpartition(":")
        if not sep or not epoch or not offset.isdigit() or len(text) > 128:
            raise ValueError(f"message id must look like 'epoch:offset', got {text[:40]!r}")
        return cls(epoch, int(offset))


@dataclass(slots=True, eq=False)
class Message:
    channel: str
    id: MessageId
    data: bytes
    """The JSON payload, encoded once by the publisher."""
    key: str | None = None
    """For `latest_only` channels: a newer message with the same key replaces a queued one."""
    _frame: str | None = field(default=None, repr=False)
    _event: bytes | None = field(default=None, repr=False)

    @property
    def frame(self) -> str:
        """The WebSocket text frame, built on first use and reused for every client."""
        if self._frame is None:
            self._frame = (
                f'{{"type":"message","channel":{json.dumps(self.channel)},'
                f'"id":"{self.id}","data":{self.data.decode()}}}'
            )
        return self._frame

    @property
    def event(self) -> bytes:
        """The SSE event: the same JSON as the WebSocket frame, with the id for resume."""
        if self._event is None:
            self._event = f"id: {self.id}\ndata: {self.frame}\n\n".encode()
        return self._event

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Resync:
    """Sent instead of missed messages when the gap is older than the channel's history."""

    channel: str
    latest: MessageId | None

    @property
    def frame(self) -> str:
        latest = json.dumps(str(self.latest) if self.latest else None)
        return f'{{"type":"resync","channel":{json.dumps(self.channel)},"latest":{latest}}}'

    @property
    def event(self) -> bytes:
        # The id moves the browser's Last-Event-ID forward, so a reconnect does not loop.
        head = f"id: {self.latest}\n" if self.latest else ""
        return f"{head}event: resync\ndata: {self.frame}\n\n".encode()

    @property
    def size(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class Notice:
    """A reply to one client (acknowledgement, pong, error), queued behind its messages."""

    frame: str

    @classmethod
    def of(cls, **fields: object) -> Notice:
        return cls(json.dumps(fields, separators=(",", ":")))

    @property
    def event(self) -> bytes:
        return f"event: notice\ndata: {self.frame}\n\n".encode()

    @property
    def size(self) -> int:
        return 0


Item = Message | Resync | Notice
"""What a subscriber's outbox holds."""
