"""A hub served over WebSocket, for end-to-end tests in real uvicorn processes.

REALTIME_TOKEN guards the socket; REDIS_URL switches the hub to the Redis backend.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, WebSocket

from mainspring import Runtime, use
from mainspring.realtime import ChannelPolicy, Hub, Overflow, serve_channels

TOKEN = os.environ.get("REALTIME_TOKEN", "let-me-in")

POLICIES = {
    "feed": ChannelPolicy(max_lag=200, history=50),
    "drop": ChannelPolicy(overflow=Overflow.DROP_OLDEST, max_lag=20, history=50),
    "scores": ChannelPolicy(overflow=Overflow.LATEST_ONLY, max_lag=20, history=50),
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        await rt.open(Hub.from_url(os.environ.get("REDIS_URL"), policies=POLICIES))
        yield


app = FastAPI(title="realtime-sample", lifespan=lifespan)
HubDep = Annotated[Hub, Depends(use(Hub))]


async def has_token(websocket: WebSocket) -> bool:
    return websocket.query_params.get("token") == TOKEN


@app.websocket("/ws")
async def channels(websocket: WebSocket, hub: HubDep) -> None:
    await serve_channels(websocket, hub, authorize=has_token, allow=lambda c: c != "secret")


@app.post("/publish/{channel}")
async def publish(
    channel: str, hub: HubDep, payload: Annotated[Any, Body()], key: str | None = None
) -> dict[str, str]:
    message = await hub.publish(channel, payload, key=key)
    return {"id": str(message.id)}


@app.post("/burst/{channel}")
async def burst(channel: str, hub: HubDep, count: int = 100, size: int = 200) -> dict[str, str]:
    """Publish `count` messages of about `size` bytes in one go, numbered from 0."""
    last = ""
    for n in range(count):
        last = str((await hub.publish(channel, {"n": n, "pad": "x" * size})).id)
    return {"last_id": last}
