"""A plain FastAPI app with a Runtime, written as a new user would: no `instrument`.

For what `mainspring run` adds to any app: the drain after SIGTERM, the 503 at the
graceful timeout, request ids and JSON errors, the in-flight cap, offline /docs.
A held request waits for a file, so a test can release it in whichever worker it landed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from mainspring import Runtime

HOLD_LIMIT = 60.0
"""Seconds a held request waits for its release at most, so nothing hangs for ever."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app):
        yield


app = FastAPI(title="served-app", lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/hold")
async def hold(marker: str) -> dict[str, int]:
    """Create `marker`.held, then answer once `marker`.release exists."""
    await anyio.Path(f"{marker}.held").write_text(str(os.getpid()))
    release = anyio.Path(f"{marker}.release")
    async with asyncio.timeout(HOLD_LIMIT):
        # The release comes from the test's process: a file is what every worker can see.
        while not await release.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return {"pid": os.getpid()}


@app.get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("a bug in a handler")
