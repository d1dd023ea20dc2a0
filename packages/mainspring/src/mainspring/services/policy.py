"""When a crashed service comes back, and when it stays down."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

RestartMode = Literal["on-failure", "always", "never"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: a uniform draw below the exponential ceiling."""

    initial: float = 1.0
    """Ceiling of the first delay, in seconds."""
    cap: float = 300.0
    """No delay is ever longer than this."""

    def ceiling(self, attempt: int) -> float:
        """The largest delay for the `attempt`-th retry (counting from 1)."""
        return min(self.cap, self.initial * 2.0 ** max(attempt - 1, 0))

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, self.ceiling(attempt))


@dataclass(frozen=True)
class RestartPolicy:
    mode: RestartMode = "on-failure"
    """`on-failure` restarts after a crash; `always` also after a clean return; `never` never."""
    backoff: Backoff = field(default_factory=Backoff)
    stable_after: float = 60.0
    """A run that lasted this long resets the backoff to its first step."""
    max_crashes: int = 5
    """More crashes than this within `window` seconds and the service is failed."""
    window: float = 600.0

    @classmethod
    def of(cls, value: RestartPolicy | RestartMode) -> RestartPolicy:
        if isinstance(value, RestartPolicy):
            return value
        if value not in ("on-failure", "always", "never"):
            raise ValueError(f"restart must be 'on-failure', 'always' or 'never', not {value!r}")
        return cls(mode=value)


class CrashWindow:
    """Crash times within the policy's window, to tell a flapping service from a bad day."""

    __slots__ = ("_policy", "_times")

    def __init__(self, policy: RestartPolicy) -> None:
        self._policy = policy
        self._times: deque[float] | None = None
        """Made at the first crash: most services never crash."""

    def record(self, now: float) -> bool:
        """Record a crash at `now`; True when the service has crashed too often."""
        if self._times is None:
            self._times = deque()
        self._times.append(now)
        while self._times and self._times[0] <= now - self._policy.window:
            self._times.popleft()
        return len(self._times) > self._policy.max_crashes
