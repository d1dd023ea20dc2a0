"""What a service is doing, as the supervisor and /debug/status see it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ServiceState(StrEnum):
    DISABLED = "disabled"
    STANDBY = "standby"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def iso(timestamp: float | None) -> str | None:
    """Wall-clock seconds as an ISO 8601 UTC string, for status output."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _wall(monotonic: float | None, wall_offset: float) -> str | None:
    return None if monotonic is None else iso(monotonic + wall_offset)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


@dataclass(slots=True)
class ErrorInfo:
    type: str
    message: str
    at: float

    @classmethod
    def from_exception(cls, exc: BaseException, at: float) -> ErrorInfo:
        return cls(type=type(exc).__name__, message=str(exc), at=at)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "at": iso(self.at)}


@dataclass(slots=True)
class LoopStatus:
    """One loop's counters; its times are on the runtime clock's monotonic scale."""

    name: str
    ticks: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    interval: float | None = None
    last_tick_started: float | None = None
    last_tick_duration: float | None = None
    next_tick_at: float | None = None
    last_error: ErrorInfo | None = None

    def to_dict(self, wall_offset: float) -> dict[str, Any]:
        """`wall_offset` turns the clock's monotonic times into wall-clock times."""
        return {
            "ticks": self.ticks,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "interval": self.interval,
            "last_tick_started": _wall(self.last_tick_started, wall_offset),
            "last_tick_duration": _rounded(self.last_tick_duration),
            "next_tick_at": _wall(self.next_tick_at, wall_offset),
            "last_error": self.last_error.to_dict() if self.last_error else None,
        }


@dataclass(slots=True)
class ServiceStatus:
    name: str
    state: ServiceState = ServiceState.STOPPED
    reason: str | None = None
    critical: bool = False
    singleton: bool = False
    restarts: int = 0
    crashes: int = 0
    last_error: ErrorInfo | None = None
    next_restart_at: float | None = None
    lease_holder: str | None = None
    fencing_token: int | None = None
    loops: dict[str, LoopStatus] = field(default_factory=dict)

    def to_dict(self, wall_offset: float) -> dict[str, Any]:
        ticks = [loop for loop in self.loops.values() if loop.last_tick_started is not None]
        latest = max(ticks, key=lambda loop: loop.last_tick_started or 0.0, default=None)
        upcoming = [loop.next_tick_at for loop in self.loops.values() if loop.next_tick_at]
        return {
            "name": self.name,
            "state": self.state.value,
            "reason": self.reason,
            "critical": self.critical,
            "singleton": self.singleton,
            "restarts": self.restarts,
            "crashes": self.crashes,
            "last_error": self.last_error.to_dict() if self.last_error else None,
            "next_restart_at": iso(self.next_restart_at),
            "last_tick_started": _wall(latest.last_tick_started, wall_offset) if latest else None,
            "last_tick_duration": _rounded(latest.last_tick_duration) if latest else None,
            "next_tick_at": _wall(min(upcoming), wall_offset) if upcoming else None,
            "lease_holder": self.lease_holder,
            "fencing_token": self.fencing_token,
            "loops": {name: loop.to_dict(wall_offset) for name, loop in self.loops.items()},
        }
