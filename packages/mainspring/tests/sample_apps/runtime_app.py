"""A real Runtime app with one looping service, for `mainspring status` end to end."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mainspring import Runtime, Service, loop


class Heartbeat(Service):
    @loop(every=60)
    async def beat(self) -> None:
        return None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        rt.supervise(Heartbeat())
        yield


app = FastAPI(title="runtime-app", lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}
