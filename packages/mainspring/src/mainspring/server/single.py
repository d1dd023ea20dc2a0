"""One uvicorn process that drains on SIGTERM, watches its event loop, ends itself when its
stop overruns the deadline, and exits with the code the app asked for."""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

import structlog
import uvicorn
from uvicorn.supervisors import ChangeReload

from mainspring import lifecycle
from mainspring.children import die_with_parent
from mainspring.observability.watchdog import LoopWatchdog, install_watchdog
from mainspring.server.deadline import StopDeadline
from mainspring.server.exitcodes import (
    EXIT_OK,
    EXIT_STARTUP_FAILURE,
    EXIT_STOP_CANCELLED,
    StartError,
)
from mainspring.server.loader import load_app
from mainspring.server.options import RunOptions
from mainspring.server.serving import served_app

log = structlog.get_logger("mainspring.server")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DrainingServer(uvicorn.Server):
    """Marks the process as draining (so /ready answers 503) the moment a stop is asked.

    After SIGTERM it keeps serving for `drain_delay` seconds, listener open, so that load
    balancers see /ready answer 503 and stop sending before uvicorn's graceful shutdown
    closes the listener. SIGINT (Ctrl-C), a second signal, or a stop before the app has
    started skip the delay.

    Once the app has started, the loop watchdog names any call that blocks the event loop
    longer than `watchdog_threshold` seconds (0: no watchdog), until the server is done,
    and `on_started` is called (the runner logs the URL it serves).
    From the stop on, a thread ends the process if it still runs `stop_deadline` seconds
    (plus a short grace) later, whatever the event loop is doing; the deadline covers the
    drain delay.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        watchdog_threshold: float,
        stop_deadline: float,
        drain_delay: float = 0.0,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.watchdog_threshold = watchdog_threshold
        self.drain_delay = drain_delay
        self._on_started = on_started
        self._watchdog: LoopWatchdog | None = None
        self._stop_deadline = StopDeadline(stop_deadline)
        self._drain_ends: float | None = None
        self._drain_logged = False
        self.forced = False
        """Whether a second Ctrl-C came before the shutdown was over (its waits were cut)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        # Not during the app's startup: a slow import or connect there stalls no request.
        if self.watchdog_threshold > 0:
            self._watchdog = install_watchdog(self.watchdog_threshold)
        if self._on_started is not None:
            self._on_started()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_deadline.start()
        try:
            await super().serve(sockets)
        finally:
            if self._watchdog is not None:
                self._watchdog.stop()
                self._watchdog = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        # Read now: once serving is over, uvicorn re-raises the signals it caught, and that
        # second SIGINT would set force_exit although nothing was cut short.
        self.forced = self.force_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop_deadline.arm()
        lifecycle.begin_draining()
        if self._drain_ends is None and self._should_drain(sig):
            # A signal handler: only note the time; the main loop's tick acts on it.
            self._drain_ends = time.monotonic() + self.drain_delay
            return
        super().handle_exit(sig, frame)

    def _should_drain(self, sig: int) -> bool:
        return (
            sig == signal.SIGTERM and self.drain_delay > 0 and self.started and not self.should_exit
        )

    async def on_tick(self, counter: int) -> bool:
        if self._drain_ends is not None and not self.should_exit:
            if not self._drain_logged:
                self._drain_logged = True
                log.info("draining: /ready answers 503", shutdown_in_s=self.drain_delay)
            if time.monotonic() >= self._drain_ends:
                self.should_exit = True
        return await super().on_tick(counter)


def install_stop_handlers(server: uvicorn.Server) -> None:
    """Route SIGTERM/SIGINT to `server` before and after uvicorn's own capture.

    uvicorn restores the previous handlers after serving and re-raises the signal it caught,
    which with the default handler kills the process with -15. With ours in place the
    re-raise is harmless and the process exits with a real exit code.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, server.handle_exit)


def exit_code(server: DrainingServer) -> int:
    if not server.started:
        return EXIT_STARTUP_FAILURE
    requested = lifecycle.requested_exit_code()
    if requested is not None:
        return requested
    # A second Ctrl-C (force_exit) skips the app's shutdown: its tasks are cancelled.
    forced = server.forced or lifecycle.stop_was_forced()
    return EXIT_STOP_CANCELLED if forced else EXIT_OK


def serve(
    config: uvicorn.Config,
    sockets: list[socket.socket],
    *,
    watchdog_threshold: float,
    stop_deadline: float,
    drain_delay: float = 0.0,
    on_started: Callable[[], None] | None = None,
) -> int:
    """Serve on the pre-bound `sockets` until stopped; return the process's exit code."""
    server = DrainingServer(
        config,
        watchdog_threshold=watchdog_threshold,
        stop_deadline=stop_deadline,
        drain_delay=drain_delay,
        on_started=on_started,
    )
    install_stop_handlers(server)
    server.run(sockets=sockets)
    return exit_code(server)


def _serve_and_exit(
    config: uvicorn.Config,
    options: RunOptions,
    stop_deadline: float,
    reloader: int,
    sockets: list[socket.socket],
) -> None:
    die_with_parent(reloader)
    options.logs.apply()  # A fresh (spawned) process: nothing is configured yet.
    try:
        config.app = served_app(load_app(options.app), options)
    except StartError as exc:  # an edit broke the app: say so, and wait for the next one
        print(f"mainspring: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(
        serve(
            config,
            sockets,
            watchdog_threshold=options.watchdog_threshold,
            stop_deadline=stop_deadline,
        )
    )


def serve_with_reload(
    config: uvicorn.Config, sock: socket.socket, *, options: RunOptions, stop_deadline: float
) -> int:
    """Development only: restart a child server process whenever a source file changes.

    No drain delay: nothing balances load onto a development server."""
    target = functools.partial(_serve_and_exit, config, options, stop_deadline, os.getpid())
    ChangeReload(config, target=target, sockets=[sock]).run()
    return EXIT_OK
