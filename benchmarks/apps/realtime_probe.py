"""What every real-time benchmark app shares: the event-loop lag probe and its routes.

Not library code. The probe sleeps 5 ms in a loop and keeps the worst overshoot: how
long the loop was blocked, as a timer (or a client's read) would see it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from fastapi import FastAPI

INTERVAL = 0.005
CHANNEL = "bench"


class LagProbe:
    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(INTERVAL)
            self.worst = max(self.worst, loop.time() - started - INTERVAL)


def payload(n: int, size: int) -> dict[str, Any]:
    """About `size` bytes of JSON, numbered so that clients can check the last one."""
    return {"n": n, "pad": "x" * max(size - 20, 0)}


Publish = Callable[[dict[str, Any]], Awaitable[None]]
Setup = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def bench_app(publish: Publish, setup: Setup | None = None) -> FastAPI:
    """A FastAPI app with /ping, /lag and /burst; `publish` sends one message to everyone.

    `setup` is the app's own lifespan (mainspring's Runtime), entered around the probe.
    """
    probe = LagProbe()
    running: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with setup(app) if setup else nullcontext():
            task = asyncio.create_task(probe.run())
            yield
            task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/lag")
    async def lag(reset: bool = False) -> dict[str, float]:
        worst = probe.worst
        if reset:
            probe.worst = 0.0
        return {"worst_ms": worst * 1000}

    @app.post("/burst")
    async def burst(count: int = 200, size: int = 200) -> dict[str, bool]:
        """Publish `count` messages back to back, in the background: the clients count them."""

        async def run() -> None:
            for n in range(count):
                await publish(payload(n, size))

        task = asyncio.create_task(run())
        running.add(task)
        task.add_done_callback(running.discard)
        return {"started": True}

    return app
