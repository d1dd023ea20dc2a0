"""What a channel does with a subscriber that reads slower than it publishes."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mainspring.realtime.message import Message


class Overflow(StrEnum):
    DISCONNECT = "disconnect"
    """Close the slow client (WebSocket 1013); it reconnects and resumes from history."""
    DROP_OLDEST = "drop_oldest"
    """Drop the oldest queued messages and keep the connection."""
    LATEST_ONLY = "latest_only"
    """Keep only the newest queued message per key (scoreboards); drop oldest past the bounds."""


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    overflow: Overflow = Overflow.DISCONNECT
    max_queued_bytes: int = 1 << 20
    """Bound on the payload bytes queued for one subscriber."""
    max_lag: int = 1000
    """Bound on the number of messages queued for one subscriber."""
    history: int = 1000
    """How many recent messages the channel keeps for resume."""

    def admits(self, messages: Sequence[Message]) -> bool:
        """Whether a replay of `messages` fits in one subscriber's queue."""
        return len(messages) <= self.max_lag and (
            sum(m.size for m in messages) <= self.max_queued_bytes
        )

    def __post_init__(self) -> None:
        for name in ("max_queued_bytes", "max_lag", "history"):
            if getattr(self, name) < 1:
                raise ValueError(f"ChannelPolicy.{name} must be at least 1")


class Policies:
    """Channel name patterns (``fnmatch``, e.g. ``games:*``) to policies; first match wins."""

    def __init__(
        self,
        patterns: Mapping[str, ChannelPolicy] | None = None,
        default: ChannelPolicy | None = None,
    ) -> None:
        self._patterns = dict(patterns or {})
        self.default = default or ChannelPolicy()
        self._cache: dict[str, ChannelPolicy] = {}

    def __call__(self, channel: str) -> ChannelPolicy:
        policy = self._cache.get(channel)
        if policy is None:
            policy = next(
                (
                    p
                    for pattern, p in self._patterns.items()
                    if fnmatch.fnmatchcase(channel, pattern)
                ),
                self.default,
            )
            if len(self._cache) < 10_000:
                self._cache[channel] = policy
        return policy
