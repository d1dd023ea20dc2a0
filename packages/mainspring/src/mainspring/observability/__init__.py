"""Structured logs with correlation ids, metrics, tracing and a loop watchdog.

``instrument(app)`` is the one call an app makes; ``mainspring run`` does the rest
(logging, the watchdog, metrics across workers).
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from starlette.applications import Starlette

from mainspring.observability.body_limit import (
    DEFAULT_MAX_BODY_SIZE,
    BodyLimitMiddleware,
    body_limit,
)
from mainspring.observability.context import current_request_id, set_subject
from mainspring.observability.errors import ErrorBody, Overloaded, install_error_handlers
from mainspring.observability.logging import configure_logging
from mainspring.observability.metrics import http_metrics
from mainspring.observability.middleware import RequestContextMiddleware
from mainspring.observability.openapi import declare_error_responses
from mainspring.settings import ConfigError

__all__ = [
    "BodyLimitMiddleware",
    "ErrorBody",
    "Overloaded",
    "RequestContextMiddleware",
    "body_limit",
    "configure_logging",
    "current_request_id",
    "instrument",
    "set_subject",
]

TRUSTED_PROXIES_ENV = "MAINSPRING_TRUSTED_PROXIES"
MAX_BODY_SIZE_ENV = "MAINSPRING_MAX_BODY_SIZE"


def instrument(
    app: FastAPI,
    *,
    trusted_proxies: list[str] | None = None,
    max_body_size: int | None = None,
) -> FastAPI:
    """Give `app` request ids, one access line per request, HTTP metrics, JSON errors and
    a request-body limit.

    Call it after adding your own middleware, so that the request context is the
    outermost layer. `trusted_proxies` (IPs or CIDRs; default: the comma-separated
    ``MAINSPRING_TRUSTED_PROXIES``) are the peers whose ``X-Forwarded-For`` is believed.
    `max_body_size` is the largest request body read, in bytes (default:
    ``MAINSPRING_MAX_BODY_SIZE``, else 1 MiB); `body_limit` changes it for one endpoint.

    An app that has the request context already is returned as it is, so `mainspring
    run` can instrument every app it serves without wrapping any of them twice.
    """
    if _has_request_context(app):
        return app
    if trusted_proxies is None:
        trusted_proxies = [p.strip() for p in os.environ.get(TRUSTED_PROXIES_ENV, "").split(",")]
    if max_body_size is None:
        max_body_size = _max_body_size_from_env()
    install_error_handlers(app)
    declare_error_responses(app)
    app.add_middleware(BodyLimitMiddleware, max_body_size=max_body_size)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=http_metrics(),
        trusted_proxies=[proxy for proxy in trusted_proxies if proxy],
    )
    return app


def _max_body_size_from_env() -> int:
    value = os.environ.get(MAX_BODY_SIZE_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_BODY_SIZE
    if not value.isdecimal():
        raise ConfigError(f"{MAX_BODY_SIZE_ENV}: expected a number of bytes (got {value!r})")
    return int(value)


def _has_request_context(app: Starlette) -> bool:
    """Whether `app` already has the request context (from `instrument` or by hand)."""
    factories: list[object] = [middleware.cls for middleware in app.user_middleware]
    return RequestContextMiddleware in factories
