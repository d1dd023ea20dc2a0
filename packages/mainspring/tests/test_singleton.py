"""Singleton services under the supervisor: standby, takeover, lease loss, backend down."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from mainspring import MainspringSettings, ManualClock, Runtime, Service, ServiceStatus, loop
from mainspring.leases import FileLeaseBackend, LeaseBackend, RedisLeaseBackend


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for lease I/O done in threads or sockets; the manual clock does not move meanwhile."""
    loop_ = asyncio.get_running_loop()
    deadline = loop_.time() + within
    while not condition():
        assert loop_.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def advance_until(clock: ManualClock, condition: Callable[[], bool]) -> None:
    """Step the clock one retry interval at a time until `condition` holds.

    A standby's retry does its lease I/O in a thread; if that I/O is still running when
    the clock moves, its next retry is scheduled from the later time, so a single
    `advance` can land just short of it.
    """
    loop_ = asyncio.get_running_loop()
    deadline = loop_.time() + 5.0
    while not condition():
        assert loop_.time() < deadline, "condition not reached in time"
        await clock.advance(1)
        await asyncio.sleep(0.01)


class Leader(Service):
    name = "leader"

    def __init__(self) -> None:
        self.ticks = 0
        self.tokens: list[int | None] = []

    @loop(every=1)
    async def tick(self) -> None:
        self.ticks += 1
        if self.fencing_token not in self.tokens:
            self.tokens.append(self.fencing_token)


def runtime(clock: ManualClock, backend: LeaseBackend) -> Runtime:
    return Runtime(
        settings=MainspringSettings(shutdown_timeout=5),
        clock=clock,
        lease_backend=backend,
        on_fatal=lambda message: None,
        rng=random.Random(1),
    )


def state(status: ServiceStatus) -> str:
    return status.state.value


async def test_one_holder_one_standby_and_takeover_when_the_holder_stops(
    clock: ManualClock, tmp_path: Path
) -> None:
    first, second = Leader(), Leader()
    a = runtime(clock, FileLeaseBackend(tmp_path, retry_interval=1, renew_interval=2))
    b = runtime(clock, FileLeaseBackend(tmp_path, retry_interval=1, renew_interval=2))
    async with b:
        async with a:
            held = a.supervise(first, singleton=True)
            await eventually(lambda: state(held) == "running")
            waiting = b.supervise(second, singleton=True)
            await eventually(lambda: waiting.reason is not None and "held by" in waiting.reason)
            assert state(waiting) == "standby"
            assert waiting.lease_holder == held.lease_holder
            await clock.advance(3)
            assert first.ticks == 4
            assert second.ticks == 0
            first_token = held.fencing_token
            assert first_token is not None
        await advance_until(clock, lambda: state(waiting) == "running")
        await clock.advance(0)
        assert second.ticks >= 1
        assert waiting.fencing_token is not None
        assert waiting.fencing_token > first_token
        assert second.tokens == [waiting.fencing_token]


async def test_losing_the_lease_stops_the_service_within_one_renewal(
    clock: ManualClock, tmp_path: Path
) -> None:
    service = Leader()
    backend = FileLeaseBackend(tmp_path, retry_interval=1, renew_interval=2)
    with capture_logs() as logs:
        async with runtime(clock, backend) as rt:
            status = rt.supervise(service, singleton=True)
            await eventually(lambda: state(status) == "running")
            backend.path_for("leader").unlink()
            await clock.advance(1.9)
            assert not [e for e in logs if e["event"] == "stepping down"]
            await clock.advance(0.1)
            await eventually(lambda: len(acquired(logs)) == 2 and state(status) == "running")
    stepped = [e for e in logs if e["event"] == "stepping down"]
    assert [e["reason"] for e in stepped] == ["lease lost to another holder"]
    assert status.restarts == 0
    assert status.crashes == 0


def acquired(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == "lease acquired"]


async def test_an_unreachable_lease_backend_keeps_the_service_in_standby(
    clock: ManualClock,
) -> None:
    backend = RedisLeaseBackend("redis://127.0.0.1:1/0", f"t-{uuid.uuid4().hex}")
    async with runtime(clock, backend) as rt:
        status = rt.supervise(Leader(), singleton=True)
        await eventually(lambda: status.reason is not None)
        assert state(status) == "standby"
        assert status.reason.startswith("lease backend unreachable")
        ready, body = await rt.readiness()
        assert ready
        assert body["status"] == "ready"


async def test_the_lease_is_kept_while_on_start_runs(clock: ManualClock, tmp_path: Path) -> None:
    class SlowStart(Leader):
        async def on_start(self) -> None:
            await self.sleep(30)

    backend = FileLeaseBackend(tmp_path, retry_interval=1, renew_interval=2)
    with capture_logs() as logs:
        async with runtime(clock, backend) as rt:
            status = rt.supervise(SlowStart(), singleton=True)
            await eventually(lambda: state(status) == "starting")
            backend.path_for("leader").unlink()
            await clock.advance(2)
            await eventually(lambda: any(e["event"] == "stepping down" for e in logs))
    assert not any(e["event"] == "service running" for e in logs)
