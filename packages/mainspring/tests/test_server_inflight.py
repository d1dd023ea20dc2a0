"""What `mainspring run` adds to the app it serves: the request context once, and the
in-flight cap inside it."""

from __future__ import annotations

from fastapi import FastAPI

from mainspring.observability import instrument
from mainspring.observability.body_limit import BodyLimitMiddleware
from mainspring.observability.middleware import RequestContextMiddleware
from mainspring.server.inflight import InFlightLimit
from mainspring.server.options import RunOptions
from mainspring.server.serving import served_app


def test_an_instrumented_app_is_not_wrapped_twice() -> None:
    app = instrument(FastAPI())
    options = RunOptions(app="unused:app", max_inflight=8)

    assert served_app(served_app(app, options), options) is app

    factories = [middleware.cls for middleware in app.user_middleware]
    # The cap sits inside the request context, so a shed request is logged with its id.
    assert factories == [RequestContextMiddleware, InFlightLimit, BodyLimitMiddleware]
