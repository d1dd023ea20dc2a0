"""Services written the naive way, one per shape, chosen by NAIVE_SHAPE.

- ``sleep-loop``: ``while True: ...; await self.sleep(900)``, never reading its stop flag.
- ``ignores-stop``: a tick that awaits something the stop signal does not touch.
- ``blocking-tick``: once ``POST /block`` arms it, a tick blocks the event loop in
  ``time.sleep(30)`` (NAIVE_BLOCK_SECONDS); it first writes ``blocked-<pid>`` into the
  directory NAIVE_MARKERS, so that a test knows.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from mainspring import Runtime, Service, loop


class SleepLoop(Service):
    polls = 0

    async def run(self) -> None:
        while True:
            self.polls += 1  # the work of one round
            await self.sleep(900)


class IgnoresStop(Service):
    @loop(every=60)
    async def wait_for_ever(self) -> None:
        await asyncio.Event().wait()


class BlockingTick(Service):
    armed = False

    @loop(every=0.1)
    async def maybe_block(self) -> None:
        if BlockingTick.armed:
            # Blocking on purpose, like the naive shape under test.
            Path(os.environ["NAIVE_MARKERS"], f"blocked-{os.getpid()}").touch()  # noqa: ASYNC240
            time.sleep(float(os.environ.get("NAIVE_BLOCK_SECONDS", "30")))  # noqa: ASYNC251


SHAPES: dict[str, type[Service]] = {
    "sleep-loop": SleepLoop,
    "ignores-stop": IgnoresStop,
    "blocking-tick": BlockingTick,
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        rt.supervise(SHAPES[os.environ["NAIVE_SHAPE"]], stop_timeout=1)
        yield


app = FastAPI(title="naive-services", lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.post("/block")
async def block() -> dict[str, int]:
    BlockingTick.armed = True
    return {"pid": os.getpid()}
