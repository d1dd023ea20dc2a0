"""Error responses that carry the request id, so a user's report leads to the log line.

Starlette hands an ``Exception`` handler to its outermost `ServerErrorMiddleware`,
which sends the handler's response and then re-raises; `RequestContextMiddleware`
around the app catches that, logs it once with the traceback and swallows it. Without
this handler `ServerErrorMiddleware` would answer a plain-text 500 first.

Every error body can be encoded, whatever the request held: JSON allows a lone surrogate
(``"\\ud800"``) that UTF-8 does not, and a 422 that echoed one used to fail as a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, cast

import structlog
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mainspring.observability.context import current_request_id

log = structlog.get_logger("mainspring.errors")

ECHO_LIMIT = 200
"""Characters a 422 echoes of each input, message or context; longer ones are cut."""
ERRORS_LIMIT = 20
"""Validation errors a 422 lists; the rest are counted in ``errors_omitted``."""
_SURROGATES = re.compile("[\ud800-\udfff]")


class ErrorBody(BaseModel):
    """What an error answered by mainspring, or by a route raising `HTTPException`, holds."""

    detail: str
    request_id: str | None = None
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "market 7 not found", "request_id": "a1b2"}]}
    )


class Overloaded(Exception):
    """The server cannot serve this now and the client should retry: a 503 with
    ``Retry-After``, logged as a warning rather than as a crash."""

    retry_after = 1
    """Seconds the client is told to wait."""


class ErrorResponse(JSONResponse):
    """JSON that always encodes, whatever a request put in it: a lone surrogate becomes
    U+FFFD, and NaN or Infinity (which Python's JSON reader accepts) a string."""

    def render(self, content: Any) -> bytes:
        try:
            text = _dumps(content)
        except ValueError:
            text = _dumps(_finite(content))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATES.sub("\ufffd", text).encode("utf-8")


def error_response(
    status: int, detail: object, headers: Mapping[str, str] | None = None
) -> ErrorResponse:
    """``{"detail": ..., "request_id": ...}`` with `status`: the shape of every 4xx and 503."""
    body = {"detail": jsonable_encoder(detail), "request_id": current_request_id()}
    return ErrorResponse(body, status, headers=dict(headers) if headers else None)


def install_error_handlers(app: FastAPI) -> None:
    """JSON 500s; 4xx and 503 as `ErrorBody`; 422s in FastAPI's shape, capped; all with
    ``request_id``."""
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Overloaded, overloaded)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Never the exception's text: it can hold data the client must not see."""
    return JSONResponse({"error": "internal_error", "request_id": current_request_id()}, 500)


async def http_error(request: Request, exc: Exception) -> Response:
    error = cast(HTTPException, exc)
    if error.status_code in (204, 304):  # no body allowed
        return Response(status_code=error.status_code, headers=error.headers)
    return error_response(error.status_code, error.detail, error.headers)


async def overloaded(request: Request, exc: Exception) -> Response:
    log.warning("overloaded, asked the client to retry", reason=str(exc))
    retry_after = cast(Overloaded, exc).retry_after
    return error_response(503, str(exc), {"Retry-After": str(retry_after)})


async def validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's shape, with each echoed value cut to `ECHO_LIMIT` characters (a 10 MB
    field would otherwise come back, twice) and at most `ERRORS_LIMIT` errors."""
    errors = cast(RequestValidationError, exc).errors()
    body: dict[str, Any] = {
        "detail": [_capped(error) for error in errors[:ERRORS_LIMIT]],
        "request_id": current_request_id(),
    }
    if len(errors) > ERRORS_LIMIT:
        body["errors_omitted"] = len(errors) - ERRORS_LIMIT
    return ErrorResponse(body, 422)


def _capped(error: Mapping[str, Any]) -> dict[str, Any]:
    """The error with its long parts cut and ``"truncated": true`` when any was."""
    capped: dict[str, Any] = {}
    truncated = False
    for key, value in error.items():
        if key == "loc":
            parts = [_clip(part) for part in value]
            capped[key] = [part for part, _ in parts]
            truncated |= any(cut for _, cut in parts)
        elif key in ("msg", "input", "ctx"):
            capped[key], cut = _clip(value)
            truncated |= cut
        else:
            capped[key] = value
    if truncated:
        capped["truncated"] = True
    return capped


def _clip(value: Any) -> tuple[Any, bool]:
    """`value` as JSON data, or the start of its JSON text when that is too long."""
    if isinstance(value, bytes):  # a body that was not JSON
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float | bool) or value is None:
        return value, False
    else:
        value = jsonable_encoder(value)
        text = json.dumps(value, ensure_ascii=False)
    if len(text) <= ECHO_LIMIT:
        return value, False
    return text[:ECHO_LIMIT] + "…", True


def _dumps(content: Any) -> str:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value
