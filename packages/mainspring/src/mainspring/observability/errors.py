"""Error responses that carry the request id, so a user's report leads to the log line.

Starlette hands an ``Exception`` handler to its outermost `ServerErrorMiddleware`,
which sends the handler's response and then re-raises; `RequestContextMiddleware`
around the app catches that, logs it once with the traceback and swallows it. Without
this handler `ServerErrorMiddleware` would answer a plain-text 500 first.
"""

from __future__ import annotations

from typing import cast

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mainspring.observability.context import current_request_id


def install_error_handlers(app: FastAPI) -> None:
    """JSON 500s with ``request_id``; 422s keep FastAPI's shape plus ``request_id``."""
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(RequestValidationError, validation_error)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Never the exception's text: it can hold data the client must not see."""
    return JSONResponse({"error": "internal_error", "request_id": current_request_id()}, 500)


async def validation_error(request: Request, exc: Exception) -> Response:
    errors = cast(RequestValidationError, exc).errors()
    return JSONResponse(
        {"detail": jsonable_encoder(errors), "request_id": current_request_id()}, 422
    )
