"""/metrics on a loopback port of its own, served by the process that sees every worker."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

import structlog

from mainspring.observability.metrics_router import serve_metrics_on_port
from mainspring.server.address import base_url
from mainspring.server.exitcodes import EXIT_PORT_UNAVAILABLE, StartError
from mainspring.server.ports import cannot_listen

log = structlog.get_logger("mainspring.server")

METRICS_HOST = "127.0.0.1"
"""No authentication on this port, so never more than loopback."""


class MetricsPort:
    """Started once the server is ready (gunicorn's master, or the one serving process)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._served: tuple[WSGIServer, threading.Thread] | None = None

    def start(self) -> None:
        try:
            self._served = serve_metrics_on_port(self.port, METRICS_HOST)
        except OSError as exc:
            raise StartError(
                cannot_listen(METRICS_HOST, self.port, exc, who="the metrics port"),
                EXIT_PORT_UNAVAILABLE,
            ) from None
        log.info("metrics serving", url=f"{base_url(METRICS_HOST, self.port)}/metrics")

    def stop(self) -> None:
        if self._served is None:
            return
        server, thread = self._served
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._served = None
