"""50 pollers on a 15-minute loop, owned by a mainspring Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mainspring import Runtime, Service, loop

POLLERS = 50


class Poller(Service):
    @loop(every=900)
    async def tick(self) -> None:
        """Stands in for one poll of an upstream API."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        for i in range(POLLERS):
            rt.supervise(Poller(), name=f"poller-{i}")
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}
