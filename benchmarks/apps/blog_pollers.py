"""The same 50 pollers in the hand-written lifespan that blog posts teach.

`stop()` only flips a flag; each task is asleep for up to 900 s before it sees
it, so shutdown waits that long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

POLLERS = 50


class Poller:
    def __init__(self) -> None:
        self._running = False

    async def tick(self) -> None:
        """Stands in for one poll of an upstream API."""

    async def start(self) -> None:
        self._running = True
        while self._running:
            await self.tick()
            await asyncio.sleep(900)

    def stop(self) -> None:
        self._running = False


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pollers = [Poller() for _ in range(POLLERS)]
    tasks = [asyncio.create_task(p.start()) for p in pollers]
    yield
    for p in pollers:
        p.stop()
    await asyncio.gather(*tasks)


app = FastAPI(lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
