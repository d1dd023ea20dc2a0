"""The same endpoint behind the request-logging stack blog posts teach: the anchor.

asgi-correlation-id's `CorrelationIdMiddleware` plus a `BaseHTTPMiddleware` that
writes one structlog JSON line per request to the file named by ``BENCH_LOG_PATH``.
`BaseHTTPMiddleware` is here only because it is what is being compared against.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

import structlog
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI, Request, Response
from starlette.middleware.base import BaseHTTPMiddleware

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(),
    ],
    logger_factory=structlog.WriteLoggerFactory(
        file=open(os.environ["BENCH_LOG_PATH"], "a", encoding="utf-8")  # noqa: SIM115
    ),
    cache_logger_on_first_use=True,
)
access_log = structlog.get_logger("api.access")


class StructlogRequestLogger(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=correlation_id.get())
        start = time.perf_counter()
        response = await call_next(request)
        access_log.info(
            "http request",
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
            client=request.client.host if request.client else None,
        )
        return response


app = FastAPI()
app.add_middleware(StructlogRequestLogger)
app.add_middleware(CorrelationIdMiddleware)


@app.get("/item")
async def item() -> dict[str, object]:
    return {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b"]}
