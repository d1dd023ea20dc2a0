"""One uvicorn process that drains on SIGTERM, watches its event loop, ends itself when its
stop overruns the deadline, and exits with the code the app asked for."""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn
from uvicorn.supervisors import ChangeReload

from mainspring import lifecycle
from mainspring.children import die_with_parent
from mainspring.observability.watchdog import LoopWatchdog, install_watchdog
from mainspring.server.deadline import StopDeadline
from mainspring.server.exitcodes import EXIT_OK, EXIT_STARTUP_FAILURE, EXIT_STOP_CANCELLED
from mainspring.server.logs import LogOptions

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DrainingServer(uvicorn.Server):
    """Marks the process as draining (so /ready answers 503) the moment a stop is asked.

    Once the app has started, the loop watchdog names any call that blocks the event loop
    longer than `watchdog_threshold` seconds (0: no watchdog), until the server is done.
    From the stop on, a thread ends the process if it still runs `stop_deadline` seconds
    (plus a short grace) later, whatever the event loop is doing.
    """

    def __init__(
        self, config: uvicorn.Config, *, watchdog_threshold: float, stop_deadline: float
    ) -> None:
        super().__init__(config)
        self.watchdog_threshold = watchdog_threshold
        self._watchdog: LoopWatchdog | None = None
        self._stop_deadline = StopDeadline(stop_deadline)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Not during the app's startup: a slow import or connect there stalls no request.
        if self.started and self.watchdog_threshold > 0:
            self._watchdog = install_watchdog(self.watchdog_threshold)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._stop_deadline.start()
        try:
            await super().serve(sockets)
        finally:
            if self._watchdog is not None:
                self._watchdog.stop()
                self._watchdog = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop_deadline.arm()
        lifecycle.begin_draining()
        super().handle_exit(sig, frame)


def install_stop_handlers(server: uvicorn.Server) -> None:
    """Route SIGTERM/SIGINT to `server` before and after uvicorn's own capture.

    uvicorn restores the previous handlers after serving and re-raises the signal it caught,
    which with the default handler kills the process with -15. With ours in place the
    re-raise is harmless and the process exits with a real exit code.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, server.handle_exit)


def exit_code(server: uvicorn.Server) -> int:
    if not server.started:
        return EXIT_STARTUP_FAILURE
    requested = lifecycle.requested_exit_code()
    if requested is not None:
        return requested
    # A second Ctrl-C (force_exit) skips the app's shutdown: its tasks are cancelled.
    forced = server.force_exit or lifecycle.forced_stops()
    return EXIT_STOP_CANCELLED if forced else EXIT_OK


def serve(
    config: uvicorn.Config,
    sockets: list[socket.socket],
    *,
    watchdog_threshold: float,
    stop_deadline: float,
) -> int:
    """Serve on the pre-bound `sockets` until stopped; return the process's exit code."""
    server = DrainingServer(
        config, watchdog_threshold=watchdog_threshold, stop_deadline=stop_deadline
    )
    install_stop_handlers(server)
    server.run(sockets=sockets)
    return exit_code(server)


def _serve_and_exit(
    config: uvicorn.Config,
    logs: LogOptions,
    watchdog_threshold: float,
    stop_deadline: float,
    reloader: int,
    sockets: list[socket.socket],
) -> None:
    die_with_parent(reloader)
    logs.apply()  # A fresh (spawned) process: nothing is configured yet.
    sys.exit(
        serve(config, sockets, watchdog_threshold=watchdog_threshold, stop_deadline=stop_deadline)
    )


def serve_with_reload(
    config: uvicorn.Config,
    sock: socket.socket,
    *,
    logs: LogOptions,
    watchdog_threshold: float,
    stop_deadline: float,
) -> int:
    """Development only: restart a child server process whenever a source file changes."""
    target = functools.partial(
        _serve_and_exit, config, logs, watchdog_threshold, stop_deadline, os.getpid()
    )
    ChangeReload(config, target=target, sockets=[sock]).run()
    return EXIT_OK
