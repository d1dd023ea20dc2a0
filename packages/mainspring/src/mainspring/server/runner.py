"""`mainspring run`: set up logging and metrics, import the app, claim the port, hold the
pidfile, serve, exit cleanly (also when stopped before serving)."""

from __future__ import annotations

import functools
import math
import os
import signal
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from typing import Any

import structlog
import uvicorn

from mainspring.observability.metrics import multiprocess_metrics
from mainspring.server import takeover
from mainspring.server.address import LOOPBACK_FOR, base_url
from mainspring.server.config_guard import ConfigErrorGuard
from mainspring.server.exitcodes import EXIT_APP_ERROR, EXIT_OK, StartError
from mainspring.server.interrupts import deferred_stop
from mainspring.server.loader import load_app
from mainspring.server.metrics_port import MetricsPort
from mainspring.server.multi import serve_workers
from mainspring.server.options import TRUSTED_PROXIES_ENV, RunOptions
from mainspring.server.pidfile import Pidfile, pidfile_path
from mainspring.server.serving import served_app
from mainspring.server.single import serve, serve_with_reload
from mainspring.server.websocket_protocol import WebSocketProtocol
from mainspring.settings import ConfigError, MainspringSettings, load_settings

__all__ = ["RunOptions", "run"]

log = structlog.get_logger("mainspring.server")

STOP_MARGIN = 5.0
"""Slack on top of the drain and shutdown deadlines before a process is killed."""


def run(
    options: RunOptions, *, setup: Callable[[], AbstractContextManager[object]] | None = None
) -> int:
    """Serve `options.app` until stopped; return the exit code. Raises StartError.

    `setup`, when given, is entered after logging is set up and before the app is imported,
    and left when the runner is done (e.g. a demo's feed and the settings pointing at it).
    A Ctrl-C or SIGTERM before serving starts ends the run with one line and exit code 0."""
    options.check()
    if options.reload:
        options = replace(options, drain_delay=0.0)  # no load balancer in development
    # Before the app is imported: its import-time log lines and metrics depend on both.
    try:
        options.logs.apply()
    except ValueError as exc:  # e.g. MAINSPRING_LOG_FORMAT=xml
        raise StartError(str(exc), EXIT_APP_ERROR) from None
    if options.trusted_proxies:
        os.environ[TRUSTED_PROXIES_ENV] = ",".join(options.trusted_proxies)
    owner = os.getpid()
    with ExitStack() as cleanup:
        try:
            with deferred_stop() as stop:
                started = _start(options, cleanup, setup)
            if stop.requested:
                return _stopped_while_starting(stop.signal)
            return _serve(options, started)
        except KeyboardInterrupt:  # in the few steps between starting and serving
            return _stopped_while_starting(None)
        finally:
            if os.getpid() != owner:
                # A gunicorn worker, forked inside _serve, is leaving through this stack:
                # the metrics directory, port and pidfile are the master's to clean up.
                cleanup.pop_all()


def _stopped_while_starting(sig: signal.Signals | None) -> int:
    log.info("stopped before serving", signal=sig.name if sig is not None else None)
    return EXIT_OK


@dataclass(frozen=True)
class _Started:
    """What serving needs once the app is imported and the port is ours."""

    app: Any
    sock: socket.socket
    pidfile: Pidfile
    metrics_port: MetricsPort | None
    stop_deadline: float
    stop_timeout: float


def _start(
    options: RunOptions,
    cleanup: ExitStack,
    setup: Callable[[], AbstractContextManager[object]] | None,
) -> _Started:
    if options.workers > 1:
        # Every worker writes its samples to files in here, which /metrics merges.
        cleanup.enter_context(multiprocess_metrics())
    if setup is not None:
        cleanup.enter_context(setup())
    app = load_app(options.app)
    try:
        shutdown_timeout = load_settings(MainspringSettings).shutdown_timeout
    except ConfigError as exc:
        raise StartError(str(exc), EXIT_APP_ERROR) from None
    # The whole stop's deadline: the drain delay, in-flight requests, then the app's own
    # shutdown deadline. A process still running past it (plus a short grace) ends itself
    # (server/deadline.py).
    stop_deadline = options.drain_delay + options.graceful_timeout + shutdown_timeout
    stop_timeout = stop_deadline + STOP_MARGIN
    sock = takeover.claim_port(
        options.host,
        options.port,
        options.app,
        takeover=options.takeover,
        stop_timeout=stop_timeout,
    )
    cleanup.callback(sock.close)
    port = sock.getsockname()[1]
    pidfile = Pidfile(pidfile_path(options.host, port))
    cleanup.callback(pidfile.release)
    pidfile.acquire(app=options.app, host=options.host, port=port, timeout=stop_timeout)
    metrics_port = None if options.metrics_port is None else MetricsPort(options.metrics_port)
    if metrics_port is not None:
        cleanup.callback(metrics_port.stop)
    return _Started(app, sock, pidfile, metrics_port, stop_deadline, stop_timeout)


def _serve(options: RunOptions, started: _Started) -> int:
    sock, metrics_port, stop_deadline = started.sock, started.metrics_port, started.stop_deadline
    announce = announcement(options.host, sock.getsockname()[1], started.app)
    if options.workers > 1:
        listener = os.dup(sock.fileno())  # gunicorn closes the listener it is given.
        # Only the workers' copies may keep the port open once they stop: one left here
        # would queue new connections that nobody accepts until the master exits.
        sock.close()
        return serve_workers(
            options,
            listener,
            stop_deadline=stop_deadline,
            stop_timeout=math.ceil(started.stop_timeout),
            metrics_port=metrics_port,
            pidfile=started.pidfile,
            on_ready=announce,
        )
    guarded = ConfigErrorGuard(served_app(started.app, options))
    config = uvicorn.Config(
        options.app if options.reload else guarded,
        interface="asgi3",  # the guard's __call__ is no `async def` (config_guard.py)
        lifespan="on",
        reload=options.reload,
        timeout_graceful_shutdown=options.graceful_timeout,
        timeout_keep_alive=options.keepalive,
        ws_per_message_deflate=options.ws_deflate,
        ws_max_size=options.ws_max_size,
        ws=WebSocketProtocol,
        # Our logging is configured already; the request middleware writes the access line
        # and alone decides whom X-Forwarded-For is believed from.
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    if options.reload:
        announce()
        return serve_with_reload(config, sock, options=options, stop_deadline=stop_deadline)
    if metrics_port is not None:
        metrics_port.start()
    try:
        return serve(
            config,
            [sock],
            watchdog_threshold=options.watchdog_threshold,
            stop_deadline=stop_deadline,
            drain_delay=options.drain_delay,
            on_started=announce,
        )
    except SystemExit:  # uvicorn's own exit when the lifespan failed to start
        if guarded.error is None:
            raise
        raise StartError(f"{options.app}: {guarded.error}", EXIT_APP_ERROR) from None


def announcement(host: str, port: int, app: object) -> Callable[[], None]:
    """Logs, once, where the app is served: its URL, and its /docs page when it has one."""
    url = base_url(host, port)
    fields = {"url": url}
    docs_url, openapi_url = getattr(app, "docs_url", None), getattr(app, "openapi_url", None)
    if isinstance(docs_url, str) and openapi_url:
        fields["docs"] = url + docs_url
    if host in LOOPBACK_FOR:
        fields["listening"] = "all interfaces"  # the URL is the local way in
    return functools.partial(log.info, "serving", **fields)
