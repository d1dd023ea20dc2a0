"""An app wired with mainspring's logging, request context and error handlers.

The observability tests serve it with plain uvicorn and read its JSON log lines.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from mainspring.observability.context import set_subject
from mainspring.observability.errors import install_error_handlers
from mainspring.observability.logging import configure_logging
from mainspring.observability.middleware import RequestContextMiddleware
from mainspring.resources.http import HttpClient

configure_logging()
log = structlog.get_logger("tests.obs_app")
http = HttpClient()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await http.open()
    try:
        yield
    finally:
        await http.close()


app = FastAPI(lifespan=lifespan)
install_error_handlers(app)
app.add_middleware(RequestContextMiddleware)


class Login(BaseModel):
    username: str
    password: str


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    log.info("item read", item_id=item_id)
    return {"item_id": item_id}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("kaboom")


@app.get("/stream-fail")
async def stream_fail() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise ValueError("mid-stream")

    return StreamingResponse(chunks())


@app.post("/login")
async def login(body: Login, request: Request) -> dict[str, bool]:
    """Logs what careless code logs: every header and the whole body."""
    log.info("login attempt", headers=dict(request.headers), body=body.model_dump())
    set_subject(request, body.username)
    return {"ok": True}


@app.get("/call")
async def call(url: str) -> dict[str, int]:
    response = await http.client.get(url)
    return {"status": response.status_code}


@app.get("/stdlib")
async def stdlib() -> dict[str, bool]:
    logging.getLogger("uvicorn.error").warning("stdlib says %s", "hello")
    return {"ok": True}


@app.websocket("/ws/{room}")
async def echo(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        log.info("ws message", room=room)
        await websocket.send_text(text)


@app.websocket("/ws-crash")
async def crash(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("socket handler bug")
