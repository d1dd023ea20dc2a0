"""The same endpoint behind mainspring's default observability stack.

Correlation ids and one JSON access line per request written to the file named by
``BENCH_LOG_PATH``, request metrics, JSON error handlers and the loop watchdog
(``BENCH_WATCHDOG=0`` turns the watchdog off, for the watchdog's own cost).
Uses `mainspring.observability.instrument` when it exists, else the same pieces by hand.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import mainspring.observability
from mainspring import Runtime
from mainspring.observability.logging import configure_logging
from mainspring.observability.watchdog import install_watchdog

WATCHDOG = os.environ.get("BENCH_WATCHDOG", "1") != "0"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(json=True, access_log_path=os.environ["BENCH_LOG_PATH"])
    watchdog = install_watchdog(threshold=0.1) if WATCHDOG else None
    try:
        async with Runtime(app):
            yield
    finally:
        if watchdog is not None:
            watchdog.stop()


app = FastAPI(lifespan=lifespan)


@app.get("/item")
async def item() -> dict[str, object]:
    return {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b"]}


instrument = getattr(mainspring.observability, "instrument", None)
if instrument is not None:
    instrument(app)
else:
    from mainspring.observability.errors import install_error_handlers
    from mainspring.observability.metrics import http_metrics
    from mainspring.observability.metrics_router import metrics_router
    from mainspring.observability.middleware import RequestContextMiddleware

    install_error_handlers(app)
    app.include_router(metrics_router)
    app.add_middleware(RequestContextMiddleware, metrics=http_metrics())
