"""A Runtime app with one singleton service; its lease backend comes from MAINSPRING_LEASE_URL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mainspring import Runtime, Service, loop


class Leader(Service):
    name = "leader"

    @loop(every=0.5)
    async def beat(self) -> None:
        return None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        rt.supervise(Leader(), singleton=True)
        yield


app = FastAPI(title="singleton-app", lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}
