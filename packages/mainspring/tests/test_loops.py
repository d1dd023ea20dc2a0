"""Loops driven by the manual clock: intervals, adaptive waits, failures, timeouts, stop."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from mainspring import MainspringSettings, ManualClock, Runtime, Service, loop
from mainspring.services.policy import Backoff


def runtime(clock: ManualClock) -> Runtime:
    return Runtime(
        settings=MainspringSettings(shutdown_timeout=10),
        clock=clock,
        on_fatal=lambda message: None,
        rng=random.Random(7),
    )


class Counter(Service):
    def __init__(self) -> None:
        self.ticks: list[float] = []

    @loop(every=60)
    async def tick(self) -> None:
        self.ticks.append(self.context.clock.monotonic())


async def test_loop_runs_at_start_then_every_interval(clock: ManualClock) -> None:
    service = Counter()
    async with runtime(clock) as rt:
        rt.supervise(service)
        await clock.advance(0)
        assert service.ticks == [0.0]
        await clock.advance(59)
        assert service.ticks == [0.0]
        await clock.advance(1)
        await clock.advance(120)
        assert service.ticks == [0.0, 60.0, 120.0, 180.0]


async def test_run_at_start_false_waits_one_interval(clock: ManualClock) -> None:
    class Later(Counter):
        @loop(every=timedelta(minutes=15), run_at_start=False)
        async def tick(self) -> None:
            self.ticks.append(self.context.clock.monotonic())

    service = Later()
    async with runtime(clock) as rt:
        rt.supervise(service)
        await clock.advance(899)
        assert service.ticks == []
        await clock.advance(1)
        assert service.ticks == [900.0]


async def test_adaptive_interval_is_asked_after_each_tick(clock: ManualClock) -> None:
    class Scores(Service):
        def __init__(self) -> None:
            self.live = False
            self.ticks: list[float] = []

        @loop(every=lambda self: 60 if self.live else 900)
        async def scores(self) -> None:
            self.ticks.append(self.context.clock.monotonic())

    service = Scores()
    async with runtime(clock) as rt:
        status = rt.supervise(service)
        await clock.advance(0)
        assert status.loops["scores"].interval == 900
        service.live = True
        await clock.advance(900)
        assert status.loops["scores"].interval == 60
        await clock.advance(120)
        assert service.ticks == [0.0, 900.0, 960.0, 1020.0]


async def test_stop_wakes_a_fifteen_minute_sleep_at_once(clock: ManualClock) -> None:
    services = [Counter() for _ in range(50)]
    async with runtime(clock) as rt:
        for index, service in enumerate(services):
            rt.supervise(service, name=f"poller-{index}")
        await clock.advance(1)
    assert clock.monotonic() == 1.0
    assert all(s.state.value == "stopped" for s in rt.supervisor.statuses())


async def test_failing_tick_is_counted_logged_and_backs_off(clock: ManualClock) -> None:
    class Flaky(Service):
        def __init__(self) -> None:
            self.calls: list[float] = []

        @loop(every=0, failure_backoff=Backoff(initial=1, cap=8))
        async def tick(self) -> None:
            self.calls.append(self.context.clock.monotonic())
            raise ValueError("upstream said no")

    service = Flaky()
    with capture_logs() as logs:
        async with runtime(clock) as rt:
            status = rt.supervise(service)
            await clock.advance(0)
            await clock.advance(1 + 2 + 4 + 8 + 8)
    assert service.calls == [0, 1, 3, 7, 15, 23]
    loop_status = status.loops["tick"]
    assert loop_status.failures == 6
    assert loop_status.consecutive_failures == 6
    assert loop_status.last_error is not None
    assert loop_status.last_error.message == "upstream said no"
    assert status.state.value == "stopped"
    assert status.crashes == 0
    failures = [e for e in logs if e["event"] == "tick failed"]
    assert len(failures) == 6
    assert failures[0]["service"] == "Flaky"
    assert failures[0]["exc_info"] is True


async def test_a_success_resets_the_failure_backoff(clock: ManualClock) -> None:
    class Recovering(Service):
        def __init__(self) -> None:
            self.calls = 0

        @loop(every=10)
        async def tick(self) -> None:
            self.calls += 1
            if self.calls <= 2:
                raise RuntimeError("not yet")

    service = Recovering()
    async with runtime(clock) as rt:
        status = rt.supervise(service)
        await clock.advance(30)
        assert status.loops["tick"].consecutive_failures == 0
        assert status.loops["tick"].failures == 2
        assert service.calls == 4


async def test_tick_over_its_timeout_is_cancelled_and_counted(clock: ManualClock) -> None:
    class Slow(Service):
        def __init__(self) -> None:
            self.finished = 0

        @loop(every=60, timeout=5)
        async def tick(self) -> None:
            await self.sleep(30)
            self.finished += 1

    service = Slow()
    with capture_logs() as logs:
        async with runtime(clock) as rt:
            status = rt.supervise(service)
            await clock.advance(5)
            assert status.loops["tick"].failures == 1
            assert status.loops["tick"].last_error is not None
            assert status.loops["tick"].last_error.type == "TimeoutError"
    assert service.finished == 0
    assert any(e["event"] == "tick timed out" for e in logs)


async def test_ticks_never_overlap(clock: ManualClock) -> None:
    class Long(Service):
        def __init__(self) -> None:
            self.running = 0
            self.most = 0
            self.starts: list[float] = []

        @loop(every=10)
        async def tick(self) -> None:
            self.running += 1
            self.most = max(self.most, self.running)
            self.starts.append(self.context.clock.monotonic())
            await self.sleep(25)
            self.running -= 1

    service = Long()
    async with runtime(clock) as rt:
        rt.supervise(service)
        for _ in range(10):
            await clock.advance(10)
    assert service.most == 1
    assert service.starts == [0, 25, 50, 75, 100]


async def test_jitter_spreads_the_wait(clock: ManualClock) -> None:
    class Jittered(Counter):
        @loop(every=60, jitter=30)
        async def tick(self) -> None:
            self.ticks.append(self.context.clock.monotonic())

    service = Jittered()
    async with runtime(clock) as rt:
        rt.supervise(service)
        await clock.advance(1000)
    gaps = [b - a for a, b in zip(service.ticks, service.ticks[1:], strict=False)]
    assert gaps
    assert all(60 <= gap <= 90 for gap in gaps)
    assert len(set(gaps)) > 1


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        loop(every=-1)


async def test_service_without_run_or_loops_crashes_with_a_clear_error(
    clock: ManualClock,
) -> None:
    class Empty(Service):
        pass

    async with runtime(clock) as rt:
        status = rt.supervise(Empty(), restart="never")
        await clock.advance(0)
    assert status.state.value == "failed"
    assert status.last_error is not None
    assert "must override run() or declare at least one @loop" in status.last_error.message


async def test_an_interval_callable_that_raises_fails_the_tick_not_the_loop(
    clock: ManualClock,
) -> None:
    class Moody(Service):
        def __init__(self) -> None:
            self.ticks = 0

        def pace(self) -> float:
            if self.ticks == 2:
                raise KeyError("pace setting")
            return 10

        @loop(every=lambda self: self.pace())
        async def tick(self) -> None:
            self.ticks += 1

    service = Moody()
    async with runtime(clock) as rt:
        status = rt.supervise(service)
        await clock.advance(40)
    assert status.state.value == "stopped"
    assert status.crashes == 0
    assert status.loops["tick"].failures == 1
    assert service.ticks == 5
