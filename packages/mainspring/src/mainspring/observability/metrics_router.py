"""GET /metrics on the app (admin only, like /debug/status), or on a port of its own."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import start_http_server

from mainspring.health import admin_only
from mainspring.observability.metrics import collecting_registry, exposition

metrics_router = APIRouter(tags=["metrics"])


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics of every worker of this server",
    dependencies=[Depends(admin_only)],
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text, or OpenMetrics when the client's Accept asks for it.",
            "content": {"application/openmetrics-text": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    # Merging the workers' files reads the disk: keep it off the event loop.
    body, content_type = await anyio.to_thread.run_sync(exposition, request.headers.get("accept"))
    return Response(body, media_type=content_type)


def serve_metrics_on_port(
    port: int, addr: str = "127.0.0.1"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve the metrics on their own port from a daemon thread, with no authentication
    (hence loopback by default). Returns the server and thread; ``server.shutdown()`` stops it.

    With several workers, call it in the gunicorn master (``when_ready``), never in a
    worker: only one process can bind the port, and the master reads every worker's files.
    """
    return start_http_server(port, addr, registry=collecting_registry())
