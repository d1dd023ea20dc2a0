"""Helpers shared by the markets tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

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
