"""ANCHOR, not library code: encode each message once, then send it to each client in turn.

``for ws in clients: await ws.send_text(text)``: the cheapest broadcast in CPU, but one
slow client holds up everyone behind it, and the loop runs the whole fan-out in one go.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from realtime_probe import CHANNEL, bench_app


class ConnectionManager:
    def __init__(self) -> None:
        self.active: set[WebSocket] = set()

    async def broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps({"type": "message", "channel": CHANNEL, "data": message})
        for ws in list(self.active):
            await ws.send_text(text)


manager = ConnectionManager()
app = bench_app(manager.broadcast)


@app.websocket("/ws")
async def channels(websocket: WebSocket) -> None:
    await websocket.accept()
    manager.active.add(websocket)
    try:
        # Benchmark addition: tells the client it is registered, as mainspring's ack does.
        await websocket.send_json({"type": "subscribed", "channel": CHANNEL})
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.active.discard(websocket)
