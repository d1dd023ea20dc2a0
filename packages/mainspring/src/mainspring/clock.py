"""Time as a dependency, so loops can be driven by tests without real sleeps.

Every wait in the runtime goes through a :class:`Clock`. A wait can be woken
early by an :class:`asyncio.Event` (the stop signal), which is what makes a
15-minute loop stop in microseconds instead of 15 minutes. Every wait yields to the
event loop at least once, even one that returns at once: a loop of waits can never
starve the rest of the process.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; used for all scheduling."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch; used only for display."""

    async def sleep_until(self, deadline: float, wake: asyncio.Event | None = None) -> bool:
        """Wait until `deadline` (monotonic); return True when `wake` cut the wait short
        (or was set already). Yields to the event loop at least once either way."""

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Raise TimeoutError in the body when it runs longer than `seconds`."""


async def sleep(clock: Clock, seconds: float, wake: asyncio.Event | None = None) -> bool:
    """Sleep `seconds` on `clock`; True when `wake` was set before the time ran out."""
    return await clock.sleep_until(clock.monotonic() + seconds, wake)


class SystemClock:
    """The real clock: the event loop's timers."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float, wake: asyncio.Event | None = None) -> bool:
        delay = deadline - time.monotonic()
        if wake is None:
            await asyncio.sleep(max(delay, 0))
            return False
        if wake.is_set():
            await asyncio.sleep(0)
            return True
        if delay <= 0:
            await asyncio.sleep(0)
            return wake.is_set()
        try:
            async with asyncio.timeout(delay):
                await wake.wait()
        except TimeoutError:
            return False
        return True

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        return asyncio.timeout(seconds)


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Sleepers and timeouts fire in deadline order; after each one the event loop
    is given enough turns for the woken code to run up to its next wait.
    """

    def __init__(self, start: float = 0.0, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    @property
    def pending(self) -> int:
        """How many sleeps and timeouts are waiting on this clock."""
        return sum(not timer.cancelled for _, _, timer in self._timers)

    def _call_at(self, deadline: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(callback)
        heapq.heappush(self._timers, (deadline, next(self._seq), timer))
        return timer

    async def sleep_until(self, deadline: float, wake: asyncio.Event | None = None) -> bool:
        if wake is not None and wake.is_set():
            await asyncio.sleep(0)
            return True
        if deadline <= self._now:
            await asyncio.sleep(0)
            return wake is not None and wake.is_set()
        fired: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def fire() -> None:
            if not fired.done():
                fired.set_result(None)

        timer = self._call_at(deadline, fire)
        waiters: set[asyncio.Future[Any]] = {fired}
        woken: asyncio.Future[Any] | None = None
        if wake is not None:
            woken = asyncio.ensure_future(wake.wait())
            waiters.add(woken)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancelled = True
            for waiter in waiters:
                waiter.cancel()
        return woken is not None and woken.done() and not woken.cancelled()

    @asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = self._call_at(self._now + seconds, expire)
        try:
            yield
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError(f"timed out after {seconds}s") from None
            raise
        finally:
            timer.cancelled = True

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, firing every timer that falls due on the way."""
        target = self._now + seconds
        await settle()
        while self._timers and self._timers[0][0] <= target:
            deadline, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, deadline)
            timer.cancelled = True
            timer.callback()
            await settle()
        self._now = target
        await settle()


class _Timer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False


async def settle(turns: int = 50) -> None:
    """Give the event loop `turns` turns so that woken tasks reach their next wait."""
    for _ in range(turns):
        await asyncio.sleep(0)
