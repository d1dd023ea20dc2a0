"""What `mainspring run` serves: the app as loaded, plus what every served app should have.

A FastAPI app gets request ids, access lines, HTTP metrics and JSON errors (`instrument`,
which leaves an app that has them alone), and the in-flight cap right inside that request
context, so a shed request still has an id and an access line. Any other ASGI app is
served as it is, only capped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from mainspring.observability import instrument
from mainspring.observability.middleware import RequestContextMiddleware
from mainspring.server.inflight import InFlightLimit
from mainspring.server.options import RunOptions


def served_app(app: Callable[..., Any], options: RunOptions) -> ASGIApp:
    """`app` ready to serve; safe to call again on the same app."""
    limit = options.max_inflight
    if not isinstance(app, FastAPI):
        asgi = cast(ASGIApp, app)
        return asgi if limit is None else InFlightLimit(asgi, limit=limit)
    instrument(app)
    # Outermost first; Starlette builds the stack from this list on the first request.
    factories: list[object] = [middleware.cls for middleware in app.user_middleware]
    if limit is not None and InFlightLimit not in factories:
        inside_context = factories.index(RequestContextMiddleware) + 1
        app.user_middleware.insert(inside_context, Middleware(InFlightLimit, limit=limit))
    return app
