"""Fair turns for writers: a bounded number woken per event-loop iteration.

A message published to 5,000 subscribers makes 5,000 writers ready at once. Woken
together they all run in one iteration of the event loop, and every timer, socket and
request waits behind them, for tens of milliseconds, or seconds in a burst. Woken a few
dozen per iteration they interleave with everything else, and the ones that wait longer
find more queued, so they send bigger batches.
"""

from __future__ import annotations

import asyncio
from collections import deque

WRITERS_PER_TURN = 16


class Turns:
    __slots__ = ("_ready", "_scheduled", "per_turn")

    def __init__(self, per_turn: int = WRITERS_PER_TURN) -> None:
        self.per_turn = per_turn
        self._ready: deque[asyncio.Future[None]] = deque()
        self._scheduled = False

    def wake(self, waiter: asyncio.Future[None]) -> None:
        """Resolve `waiter` in a coming iteration, in the order asked."""
        self._ready.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    async def wait(self) -> None:
        """Return after the writers woken before this call have had their turn."""
        waiter = asyncio.get_running_loop().create_future()
        self.wake(waiter)
        await waiter

    def _run(self) -> None:
        ready = self._ready
        for _ in range(min(self.per_turn, len(ready))):
            waiter = ready.popleft()
            if not waiter.done():
                waiter.set_result(None)
        if ready:
            asyncio.get_running_loop().call_soon(self._run)
        else:
            self._scheduled = False
