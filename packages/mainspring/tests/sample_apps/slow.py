"""An app with a slow endpoint, to see SIGTERM drain in-flight requests."""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, Response

from mainspring import lifecycle

app = FastAPI()
in_flight = 0


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/slow")
async def slow() -> dict[str, str]:
    global in_flight
    in_flight += 1
    try:
        await asyncio.sleep(1.5)
    finally:
        in_flight -= 1
    return {"done": "yes"}


@app.get("/in-flight")
async def count_in_flight() -> dict[str, int]:
    """Lets a test send SIGTERM only once its slow request has reached the app."""
    return {"in_flight": in_flight}


@app.get("/ready")
async def ready(response: Response) -> dict[str, bool]:
    draining = lifecycle.is_draining()
    response.status_code = 503 if draining else 200
    return {"ready": not draining}


@app.post("/fail")
async def fail() -> dict[str, str]:
    """Act like a critical service that failed: ask the runner to exit with code 3."""
    lifecycle.request_exit()
    return {"exiting": "yes"}
