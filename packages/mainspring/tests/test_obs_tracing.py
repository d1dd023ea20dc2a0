"""Tracing: a request or a tick shares its trace with the calls it makes; off costs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from mainspring.observability.tracing import setup_tracing, tick_span, tracing_configured


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    """A real HTTP server on loopback, for the outbound calls to reach."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/upstream"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_kind(finished: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in finished if span.kind is kind]


async def test_a_request_and_its_outbound_call_are_one_trace(
    upstream: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    app = FastAPI()

    @app.get("/outbound/{n}")
    async def outbound(n: int) -> dict[str, int]:
        async with httpx.AsyncClient() as client:
            response = await client.get(upstream)
        return {"upstream": response.status_code}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        # As in a real server, the middleware stack is built before the app's startup.
        assert (await client.get("/outbound/0")).status_code == 200
        tracing = setup_tracing(app, tracer_provider=provider)
        assert tracing is not None
        try:
            assert (await client.get("/outbound/1")).json() == {"upstream": 200}
        finally:
            tracing.shutdown()

    finished = exporter.get_finished_spans()
    [server] = by_kind(finished, SpanKind.SERVER)
    [outgoing] = by_kind(finished, SpanKind.CLIENT)
    assert server.name == "GET /outbound/{n}"
    assert outgoing.context is not None
    assert server.context is not None
    assert outgoing.parent is not None
    assert outgoing.context.trace_id == server.context.trace_id
    assert outgoing.parent.span_id == server.context.span_id
    assert len(finished) == 2  # no span per ASGI send/receive


async def test_a_tick_is_a_root_span_holding_its_calls(
    upstream: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracing = setup_tracing(FastAPI(), tracer_provider=provider)
    assert tracing is not None
    try:
        with tick_span("nba", "scores"):
            async with httpx.AsyncClient() as client:
                await client.get(upstream)
    finally:
        tracing.shutdown()

    finished = exporter.get_finished_spans()
    [tick] = by_kind(finished, SpanKind.INTERNAL)
    [outgoing] = by_kind(finished, SpanKind.CLIENT)
    assert tick.name == "tick nba.scores"
    assert tick.parent is None
    assert tick.attributes == {"mainspring.service": "nba", "mainspring.loop": "scores"}
    assert tick.context is not None
    assert outgoing.parent is not None
    assert outgoing.parent.span_id == tick.context.span_id


async def test_queries_of_a_given_engine_nest_in_the_tick(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    engine = create_async_engine("sqlite+aiosqlite://")
    tracing = setup_tracing(FastAPI(), tracer_provider=provider, engines=[engine])
    assert tracing is not None
    try:
        with tick_span("ledger", "settle"):
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
    finally:
        tracing.shutdown()
        await engine.dispose()

    finished = exporter.get_finished_spans()
    [tick] = [span for span in finished if span.name == "tick ledger.settle"]
    [query] = [span for span in finished if span.name == "select"]
    assert query.kind is SpanKind.CLIENT
    assert query.attributes is not None
    assert query.attributes["db.statement"] == "select 1"
    assert tick.context is not None
    assert query.parent is not None
    assert query.parent.span_id == tick.context.span_id


async def test_after_shutdown_nothing_is_traced(
    upstream: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracing = setup_tracing(FastAPI(), tracer_provider=provider)
    assert tracing is not None
    tracing.shutdown()
    with tick_span("nba", "scores") as span:
        async with httpx.AsyncClient() as client:
            await client.get(upstream)
    assert span is None
    assert exporter.get_finished_spans() == ()


def test_the_environment_turns_tracing_on() -> None:
    assert not tracing_configured({})
    assert not tracing_configured({"MAINSPRING_TRACING": "0"})
    assert tracing_configured({"MAINSPRING_TRACING": "1"})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})


OFF_SCRIPT = textwrap.dedent(
    """
    import sys
    from fastapi import FastAPI
    import mainspring.runtime
    from mainspring.observability.tracing import setup_tracing, tick_span

    app = FastAPI()
    assert setup_tracing(app) is None
    with tick_span("nba", "scores") as span:
        assert span is None
    assert tick_span("a", "b") is tick_span("c", "d")
    loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk",
              "opentelemetry.instrumentation", "opentelemetry.exporter"))]
    assert not loaded, loaded
    assert app.middleware_stack is None and not hasattr(app, "_original_build_middleware_stack")
    print("off")
    """
)


def test_without_configuration_tracing_is_off_and_the_sdk_is_never_imported() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k != "MAINSPRING_TRACING"
    }
    done = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off"
