"""An app with a handler that blocks the event loop.

It installs no watchdog and configures no logging: `mainspring run` does both, and the
test reads the watchdog's warning from the runner's JSON lines.
"""

from __future__ import annotations

import os
import time

from fastapi import FastAPI

from mainspring.observability.context import bind_request

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/block")
async def block() -> dict[str, str]:
    binding = bind_request("blocking-request-1", path="/block")
    try:
        time.sleep(0.3)  # noqa: ASYNC251 BLOCKING CALL: the test looks for this line.
    finally:
        binding.reset()
    return {"blocked": "yes"}
