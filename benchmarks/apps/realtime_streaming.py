"""ANCHOR, not library code: SSE the way blog posts write it, on a bare Starlette
``StreamingResponse`` over an async generator.

/events/{channel}: one ``asyncio.Queue`` per stream, /burst puts each message in every
queue. /tail/{name}: each connection opens the file under TAIL_ROOT itself and polls it
every TAIL_POLL seconds with a blocking ``readline``, until NAME.done exists.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from realtime_probe import bench_app
from starlette.responses import StreamingResponse

queues: set[asyncio.Queue[str]] = set()


async def publish(message: dict[str, Any]) -> None:
    text = json.dumps(message)
    for queue in queues:
        queue.put_nowait(text)


app = bench_app(publish)


@app.get("/events/{channel}")
async def events(channel: str) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        queues.add(queue)
        try:
            while True:
                yield f"data: {await queue.get()}\n\n"
        finally:
            queues.discard(queue)

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.get("/tail/{name}")
async def tail(name: str) -> StreamingResponse:
    root = Path(os.environ["TAIL_ROOT"])
    poll = float(os.environ.get("TAIL_POLL", "0.25"))

    async def follow() -> AsyncIterator[str]:
        with (root / name).open() as file:
            while True:
                line = file.readline()
                if line.endswith("\n"):
                    yield f"data: {line.strip()}\n\n"
                elif (root / f"{name}.done").exists():
                    return
                else:
                    file.seek(file.tell() - len(line))
                    await asyncio.sleep(poll)

    return StreamingResponse(follow(), media_type="text/event-stream")
