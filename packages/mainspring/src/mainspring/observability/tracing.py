"""OpenTelemetry traces: requests, outbound HTTP, SQL and service ticks, in one trace each.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) or
``MAINSPRING_TRACING=1`` is set. Off costs nothing: the SDK and the instrumentations
are not imported, and :func:`tick_span` hands back one shared no-op context manager.
Set it up in each worker, from the app's startup: the span exporter runs a thread,
and threads do not survive a fork.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

TRACING_ENV = "MAINSPRING_TRACING"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_NO_SPAN: AbstractContextManager[None] = nullcontext()
_tracer: Tracer | None = None
_root: Context | None = None


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces."""
    if environ.get(TRACING_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return any(environ.get(name) for name in ENDPOINT_ENVS)


def tick_span(service: str, loop: str) -> AbstractContextManager[Span | None]:
    """A root span around one tick of `loop`; spans of calls made in the tick nest in it."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(
        f"tick {service}.{loop}",
        context=_root,
        attributes={"mainspring.service": service, "mainspring.loop": loop},
    )


class Tracing:
    """Tracing as set up for one app; :meth:`shutdown` at the end of its lifespan."""

    def __init__(self, app: FastAPI, provider: TracerProvider, owns_provider: bool) -> None:
        self.app = app
        self.provider = provider
        self._owns_provider = owns_provider

    def shutdown(self) -> None:
        """Stop tracing in this process; export the spans still buffered if we made the
        provider."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        global _tracer, _root
        _tracer = _root = None
        FastAPIInstrumentor.uninstrument_app(self.app)
        HTTPXClientInstrumentor().uninstrument()
        SQLAlchemyInstrumentor().uninstrument()
        if self._owns_provider:
            self.provider.shutdown()


def setup_tracing(
    app: FastAPI,
    *,
    service_name: str | None = None,
    exporter: SpanExporter | None = None,
    tracer_provider: TracerProvider | None = None,
    engines: Iterable[Engine | AsyncEngine] = (),
    enabled: bool | None = None,
) -> Tracing | None:
    """Trace `app`'s requests, httpx calls and SQLAlchemy queries; None when tracing is off.

    Tracing is on when `enabled` says so, or, if it is None, when an `exporter` or a
    `tracer_provider` is given or :func:`tracing_configured`. Without a `tracer_provider`
    one is made, exporting by OTLP/HTTP (or to `exporter`), and installed as the global one.
    Engines created from now on are traced; pass `engines` that exist already.
    """
    if enabled is None:
        enabled = exporter is not None or tracer_provider is not None or tracing_configured()
    if not enabled:
        return None

    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from sqlalchemy.ext.asyncio import AsyncEngine

    global _tracer, _root
    owns_provider = tracer_provider is None
    provider = tracer_provider or _make_provider(
        service_name or os.environ.get("OTEL_SERVICE_NAME") or app.title, exporter
    )
    if owns_provider:
        trace.set_tracer_provider(provider)
    # Without send/receive spans: they would add two spans per ASGI message.
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    # The app's startup runs after its middleware stack was built: build it again, traced.
    app.middleware_stack = None
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # Its declared range stops below SQLAlchemy 2.1, which it traces correctly.
    SQLAlchemyInstrumentor().instrument(
        skip_dep_check=True,
        tracer_provider=provider,
        engines=[e.sync_engine if isinstance(e, AsyncEngine) else e for e in engines],
    )
    _tracer = provider.get_tracer("mainspring")
    _root = Context()
    return Tracing(app, provider, owns_provider)


def _make_provider(service_name: str, exporter: SpanExporter | None) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
    return provider
