"""Helpers shared by the markets tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from mainspring import load_settings
from markets.app import create_app
from markets.settings import MarketsSettings

READY_DEADLINE = 30.0


@asynccontextmanager
async def served(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The markets app with `settings`, its lifespan running, once /ready says 200
    (as a load balancer would wait): a client that talks to it in-process."""
    app = create_app(load_settings(MarketsSettings, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://markets") as client:
            async with asyncio.timeout(READY_DEADLINE):
                while True:
                    if (await client.get("/ready")).status_code == 200:
                        break
                    await asyncio.sleep(0.02)
            yield client


@asynccontextmanager
async def listening(port: int = 0, **settings: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """The markets app served by uvicorn on 127.0.0.1:`port` (0: a free one), in this event
    loop, once /ready says 200: the app and its base URL. For streams and WebSockets, which
    an in-process transport cannot carry, and for restarts on the same port."""
    app = create_app(load_settings(MarketsSettings, **settings))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with httpx.AsyncClient(base_url=url) as client, asyncio.timeout(READY_DEADLINE):
                while True:
                    assert not serving.done(), "the server stopped while starting"
                    try:
                        if (await client.get("/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
            yield app, url
        finally:
            server.should_exit = True
            await serving
