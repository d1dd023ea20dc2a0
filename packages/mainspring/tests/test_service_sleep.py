"""`Service.sleep` once stop is asked: the naive shapes of a service, on the manual clock.

A sleep raises ServiceStopped as soon as the service is asked to stop, so a loop that never
reads its stop flag ends at once, cleanly; a plain ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

import asyncio
import random

from structlog.testing import capture_logs

from mainspring import MainspringSettings, ManualClock, Runtime, Service, ServiceStopped, loop

RUNAWAY = 1000
"""Rounds after which a test service gives up: the old behaviour then fails the test
instead of spinning it for ever."""


def runtime(clock: ManualClock) -> Runtime:
    return Runtime(
        settings=MainspringSettings(shutdown_timeout=10),
        clock=clock,
        on_fatal=lambda message: None,
        rng=random.Random(5),
    )


class Poller(Service):
    """`while True: poll(); await self.sleep(900)`, never reading its stop flag."""

    def __init__(self, swallow: bool = False) -> None:
        self.polls = 0
        self.swallowed = 0
        self.swallow = swallow

    async def run(self) -> None:
        while self.polls < RUNAWAY:
            self.polls += 1
            try:
                await self.sleep(900)
            except Exception:
                if not self.swallow:
                    raise
                self.swallowed += 1


async def stop_after(clock: ManualClock, rt: Runtime, seconds: float) -> list[dict[str, object]]:
    """Run `rt` for `seconds` of clock time, shut it down; return the log of the shutdown."""
    await clock.advance(seconds)
    with capture_logs() as logs:
        await rt.shutdown()
    return logs


async def test_a_loop_that_ignores_its_stop_flag_stops_at_once_in_its_sleep(
    clock: ManualClock,
) -> None:
    service = Poller()
    async with runtime(clock) as rt:
        status = rt.supervise(service)
        logs = await stop_after(clock, rt, 1800)
    assert service.polls == 3  # at 0, 900 and 1800: none after the stop
    assert clock.monotonic() == 1800  # no stop_timeout waited out
    assert status.state.value == "stopped"
    assert status.last_error is None
    stopped = next(e for e in logs if e["event"] == "runtime stopped")
    assert stopped["forced"] is None


async def test_except_exception_around_the_sleep_does_not_swallow_the_stop(
    clock: ManualClock,
) -> None:
    service = Poller(swallow=True)
    async with runtime(clock) as rt:
        rt.supervise(service)
        await stop_after(clock, rt, 0)
    assert (service.polls, service.swallowed) == (1, 0)


async def test_a_sleep_begun_after_the_stop_raises_at_once(clock: ManualClock) -> None:
    class Finisher(Service):
        """Busy with something deaf to the stop, then sleeps."""

        def __init__(self) -> None:
            self.busy = asyncio.Event()
            self.outcome = ""

        async def run(self) -> None:
            await self.busy.wait()
            try:
                await self.sleep(60)
                self.outcome = "slept"
            except ServiceStopped:
                self.outcome = "stopped"
                raise

    service = Finisher()
    async with runtime(clock) as rt:
        status = rt.supervise(service, stop_timeout=5)
        await clock.advance(0)
        with capture_logs() as logs:
            shutdown = asyncio.ensure_future(rt.shutdown())
            await clock.advance(1)
            service.busy.set()
            await clock.advance(0)
            await shutdown
    assert service.outcome == "stopped"
    assert clock.monotonic() == 1
    assert status.state.value == "stopped"
    stopped = next(e for e in logs if e["event"] == "runtime stopped")
    assert stopped["forced"] is None


async def test_a_tick_that_sleeps_after_the_stop_ends_its_loop_cleanly(
    clock: ManualClock,
) -> None:
    class Pager(Service):
        """Fetches pages one by one, pausing between them: a tick that sleeps."""

        def __init__(self) -> None:
            self.pages: list[float] = []

        @loop(every=3600)
        async def fetch(self) -> None:
            for _ in range(5):
                self.pages.append(self.context.clock.monotonic())
                await self.sleep(30)

    service = Pager()
    async with runtime(clock) as rt:
        status = rt.supervise(service)
        logs = await stop_after(clock, rt, 45)
    assert service.pages == [0, 30]  # the tick ended in the sleep after the stop
    assert clock.monotonic() == 45
    assert status.loops["fetch"].failures == 0
    assert status.state.value == "stopped"
    stopped = next(e for e in logs if e["event"] == "runtime stopped")
    assert stopped["forced"] is None
