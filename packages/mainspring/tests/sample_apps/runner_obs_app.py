"""An instrumented app for the tests of what `mainspring run` wires: logs, metrics across
workers, trusted proxies, the watchdog."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from mainspring import Runtime
from mainspring.observability import instrument

log = structlog.get_logger("tests.runner_obs_app")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app):
        yield


app = instrument(FastAPI(lifespan=lifespan))


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"item": item_id, "pid": os.getpid()}


@app.get("/log")
async def write_log() -> dict[str, int]:
    log.info("info line")
    log.warning("warning line")
    return {"pid": os.getpid()}


@app.get("/block")
async def block() -> dict[str, int]:
    time.sleep(0.3)  # noqa: ASYNC251 the loop watchdog must report this
    return {"pid": os.getpid()}
