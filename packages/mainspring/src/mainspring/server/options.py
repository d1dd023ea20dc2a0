"""What `mainspring run` was asked to do, shared by the runner, gunicorn's master and workers."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from mainspring.server.exitcodes import EXIT_APP_ERROR, StartError
from mainspring.server.logs import LogOptions
from mainspring.urls import MAX_PORT

TRUSTED_PROXIES_ENV = "MAINSPRING_TRUSTED_PROXIES"
"""Comma-separated IPs/CIDRs whose X-Forwarded-For the request middleware believes."""
DEFAULT_WATCHDOG_THRESHOLD = 0.1
DEFAULT_DRAIN_DELAY = 5.0
"""Seconds. Kubernetes removes a stopping pod from its Service while it sends SIGTERM, and
the change takes a few seconds to reach every node and ingress; a load balancer that
probes /ready needs a probe or two. 5 s covers the first and keeps the worst-case stop
(5 + 10 s of requests + 10 s of shutdown) inside Kubernetes' default 30 s grace period."""
DEFAULT_KEEPALIVE = 5
"""Seconds an idle keep-alive connection stays open: uvicorn's default, for one worker or many."""


@dataclass(frozen=True)
class RunOptions:
    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    """0 picks a free port; the runner logs the one it got."""
    workers: int = 1
    reload: bool = False
    takeover: bool = False
    graceful_timeout: int = 10
    """How long in-flight requests may finish after SIGTERM (and the drain delay)."""
    drain_delay: float = DEFAULT_DRAIN_DELAY
    """After SIGTERM, how long the listener stays open, serving as usual while /ready
    answers 503, before the graceful shutdown begins. SIGINT (Ctrl-C) skips it."""
    keepalive: int = DEFAULT_KEEPALIVE
    """Seconds an idle keep-alive connection stays open, with one worker or many."""
    max_inflight: int | None = None
    """Requests one worker serves at once; more are answered 503 with Retry-After."""
    logs: LogOptions = field(default_factory=LogOptions)
    trusted_proxies: tuple[str, ...] = ()
    metrics_port: int | None = None
    """Serve /metrics without authentication on 127.0.0.1:PORT, for every worker."""
    watchdog_threshold: float = DEFAULT_WATCHDOG_THRESHOLD
    """Warn when the event loop is blocked longer than this (seconds); 0 turns it off."""
    ws_max_size: int = 1 << 20
    """The largest WebSocket frame accepted, in bytes (uvicorn's default is 16 MiB)."""
    ws_deflate: bool = False
    """Per-message deflate on WebSockets. Off by default: it costs 40-90% more CPU per
    delivered message, which fan-out to many clients pays once per client."""

    def check(self) -> None:
        """Refuse what cannot be served, in one line, before anything is imported or bound.

        A port past 65535 must not reach the socket layer: getaddrinfo wraps it silently
        (99999 would listen on 34463)."""
        if not 0 <= self.port <= MAX_PORT:
            _refuse(f"port {self.port} is not a TCP port (0-{MAX_PORT}; 0 picks a free one)")
        try:
            socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
            _refuse(f"host {self.host!r} is not an address to listen on: {reason}")
        if self.workers < 1:
            _refuse(f"workers must be at least 1, not {self.workers}")
        if self.drain_delay < 0:
            _refuse(f"the drain delay cannot be negative ({self.drain_delay:g} s)")
        if self.keepalive < 1:
            _refuse(f"keepalive must be at least 1 s, not {self.keepalive}")
        if self.max_inflight is not None and self.max_inflight < 1:
            _refuse(f"max in-flight requests must be at least 1, not {self.max_inflight}")


def _refuse(message: str) -> None:
    raise StartError(message, EXIT_APP_ERROR)
