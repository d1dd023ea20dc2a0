"""mainspring's real-time layer: a Hub (memory backend) with `serve_channels` at /ws,
`channel_stream` (SSE) at /events/{channel}, and `tail_jsonl` at /tail/{name} when
TAIL_ROOT is set (TAIL_POLL: the poll interval; a stream ends once NAME.done exists).

Clients subscribe with ``{"type": "subscribe", "channel": "bench"}`` and get ``subscribed``
back once registered; /burst publishes with `hub.publish`, which encodes each message once.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from realtime_probe import CHANNEL, bench_app

from mainspring import Runtime
from mainspring.realtime import (
    EventStream,
    Hub,
    TailRoot,
    channel_stream,
    serve_channels,
    tail_jsonl,
)

hubs: list[Hub] = []
tails: list[TailRoot] = []


@asynccontextmanager
async def setup(app: FastAPI) -> AsyncIterator[None]:
    async with Runtime(app) as rt:
        hubs.append(await rt.open(Hub()))
        if root := os.environ.get("TAIL_ROOT"):
            poll = float(os.environ.get("TAIL_POLL", "0.25"))
            tails.append(await rt.open(TailRoot(root, poll_interval=poll)))
        yield


async def publish(message: dict[str, Any]) -> None:
    await hubs[0].publish(CHANNEL, message)


app = bench_app(publish, setup)


@app.websocket("/ws")
async def channels(websocket: WebSocket) -> None:
    await serve_channels(websocket, hubs[0], allow=lambda channel: True)


@app.get("/events/{channel}")
async def events(channel: str, request: Request) -> EventStream:
    return channel_stream(request, hubs[0], channel)


@app.get("/tail/{name}")
async def tail(name: str, request: Request) -> EventStream:
    done = Path(tails[0].base, f"{name}.done")
    return tail_jsonl(request, tails[0], name, until=done.exists)
