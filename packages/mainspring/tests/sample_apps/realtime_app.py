"""A hub served over WebSocket, for end-to-end tests in real uvicorn processes.

REALTIME_TOKEN guards the socket; REDIS_URL switches the hub to the Redis backend.
SSE_KEEPALIVE sets the SSE keepalive (seconds). TAIL_ROOT enables /tail (TAIL_POLL: its poll
interval, TAIL_WAIT: how long a missing file is waited for, TAIL_MAX_READERS: files followed at
once).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request, WebSocket

from mainspring import Runtime, use
from mainspring.realtime import (
    ChannelPolicy,
    EventStream,
    Hub,
    Overflow,
    TailRoot,
    channel_stream,
    serve_channels,
    tail_jsonl,
)

TOKEN = os.environ.get("REALTIME_TOKEN", "let-me-in")
KEEPALIVE = float(os.environ.get("SSE_KEEPALIVE", "15"))
TAIL_ROOT = os.environ.get("TAIL_ROOT")

POLICIES = {
    "feed": ChannelPolicy(max_lag=200, history=50),
    "drop": ChannelPolicy(overflow=Overflow.DROP_OLDEST, max_lag=20, history=50),
    "scores": ChannelPolicy(overflow=Overflow.LATEST_ONLY, max_lag=20, history=50),
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        await rt.open(Hub.from_url(os.environ.get("REDIS_URL"), policies=POLICIES))
        if TAIL_ROOT:
            await rt.open(
                TailRoot(
                    TAIL_ROOT,
                    poll_interval=float(os.environ.get("TAIL_POLL", "0.1")),
                    wait_timeout=float(os.environ.get("TAIL_WAIT", "60")),
                    max_readers=int(os.environ.get("TAIL_MAX_READERS", "256")),
                )
            )
        yield


app = FastAPI(title="realtime-sample", lifespan=lifespan)
HubDep = Annotated[Hub, Depends(use(Hub))]
TailsDep = Annotated[TailRoot, Depends(use(TailRoot))]


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


@app.get("/ping")
async def ping() -> dict[str, int]:
    """Which process answers: tests read its memory from /proc."""
    return {"pid": os.getpid()}


@app.get("/events/{channel}")
async def events(channel: str, request: Request, hub: HubDep) -> EventStream:
    return channel_stream(request, hub, channel, keepalive=KEEPALIVE)


@app.get("/tail/{name:path}")
async def tail(name: str, request: Request, tails: TailsDep) -> EventStream:
    """Follow TAIL_ROOT/NAME until TAIL_ROOT/NAME.done exists."""
    marker = Path(tails.base, f"{name}.done")
    return tail_jsonl(request, tails, name, until=marker.exists, keepalive=KEEPALIVE)
