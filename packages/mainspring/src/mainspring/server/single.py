"""One uvicorn process that drains on SIGTERM, watches its event loop, and exits with the
code the app asked for."""

from __future__ import annotations

import functools
import signal
import socket
import sys
from types import FrameType

import uvicorn
from uvicorn.supervisors import ChangeReload

from mainspring import lifecycle
from mainspring.observability.watchdog import LoopWatchdog, install_watchdog
from mainspring.server.exitcodes import EXIT_OK, EXIT_STARTUP_FAILURE
from mainspring.server.logs import LogOptions

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class DrainingServer(uvicorn.Server):
    """Marks the process as draining (so /ready answers 503) the moment a stop is asked.

    Once the app has started, the loop watchdog names any call that blocks the event loop
    longer than `watchdog_threshold` seconds (0: no watchdog), until the server is done.
    """

    def __init__(self, config: uvicorn.Config, *, watchdog_threshold: float) -> None:
        super().__init__(config)
        self.watchdog_threshold = watchdog_threshold
        self._watchdog: LoopWatchdog | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Not during the app's startup: a slow import or connect there stalls no request.
        if self.started and self.watchdog_threshold > 0:
            self._watchdog = install_watchdog(self.watchdog_threshold)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets)
        finally:
            if self._watchdog is not None:
                self._watchdog.stop()
                self._watchdog = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
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
    return lifecycle.requested_exit_code() or EXIT_OK


def serve(
    config: uvicorn.Config, sockets: list[socket.socket], *, watchdog_threshold: float
) -> int:
    """Serve on the pre-bound `sockets` until stopped; return the process's exit code."""
    server = DrainingServer(config, watchdog_threshold=watchdog_threshold)
    install_stop_handlers(server)
    server.run(sockets=sockets)
    return exit_code(server)


def _serve_and_exit(
    config: uvicorn.Config,
    logs: LogOptions,
    watchdog_threshold: float,
    sockets: list[socket.socket],
) -> None:
    logs.apply()  # A fresh (spawned) process: nothing is configured yet.
    sys.exit(serve(config, sockets, watchdog_threshold=watchdog_threshold))


def serve_with_reload(
    config: uvicorn.Config, sock: socket.socket, *, logs: LogOptions, watchdog_threshold: float
) -> int:
    """Development only: restart a child server process whenever a source file changes."""
    target = functools.partial(_serve_and_exit, config, logs, watchdog_threshold)
    ChangeReload(config, target=target, sockets=[sock]).run()
    return EXIT_OK
