"""What `mainspring run` was asked to do, shared by the runner, gunicorn's master and workers."""

from __future__ import annotations

from dataclasses import dataclass, field

from mainspring.server.logs import LogOptions

TRUSTED_PROXIES_ENV = "MAINSPRING_TRUSTED_PROXIES"
"""Comma-separated IPs/CIDRs whose X-Forwarded-For the request middleware believes."""
DEFAULT_WATCHDOG_THRESHOLD = 0.1


@dataclass(frozen=True)
class RunOptions:
    app: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    reload: bool = False
    takeover: bool = False
    graceful_timeout: int = 10
    """How long in-flight requests may finish after SIGTERM."""
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
