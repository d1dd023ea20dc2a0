"""ANCHOR, not library code: the ConnectionManager from the usual blog post.

A set of sockets; each broadcast runs ``asyncio.gather`` over ``send_json`` for every
client, so every message costs one task and one JSON encoding per client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from realtime_probe import CHANNEL, bench_app


class ConnectionManager:
    def __init__(self) -> None:
        self.active: set[WebSocket] = set()

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active.add(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active.discard(websocket)

    async def broadcast(self, message: dict[str, Any]) -> None:
        frame = {"type": "message", "channel": CHANNEL, "data": message}
        await asyncio.gather(*(ws.send_json(frame) for ws in self.active))


manager = ConnectionManager()
app = bench_app(manager.broadcast)


@app.websocket("/ws")
async def channels(websocket: WebSocket) -> None:
    await manager.connect(websocket)
    try:
        # Benchmark addition: tells the client it is registered, as mainspring's ack does.
        await websocket.send_json({"type": "subscribed", "channel": CHANNEL})
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(websocket)
