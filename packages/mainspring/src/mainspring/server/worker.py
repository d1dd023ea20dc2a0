"""The gunicorn worker: uvicorn's worker with the draining server and real exit codes.

A worker whose app requested an exit (a critical service failed) exits with that code; for
code 3 gunicorn's arbiter halts the whole server instead of restarting the worker forever.
A worker dies with its master: the kernel sends it SIGTERM when the master dies (Linux),
and on every heartbeat it checks that its parent is still the master.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from mainspring.children import die_with_parent
from mainspring.server.config_guard import ConfigErrorGuard
from mainspring.server.deadline import FORCED_EXIT_GRACE
from mainspring.server.multi import MainspringApplication
from mainspring.server.options import RunOptions
from mainspring.server.single import DrainingServer, exit_code, install_stop_handlers


class MainspringWorker(UvicornWorker):  # type: ignore[misc]
    # The request middleware writes the access line and alone decides whom X-Forwarded-For
    # is believed from.
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "access_log": False,
        "proxy_headers": False,
        "ws": "mainspring.server.websocket_protocol:WebSocketProtocol",
        "interface": "asgi3",  # the guard's __call__ is no `async def` (config_guard.py)
    }

    _server: DrainingServer | None = None

    def init_process(self) -> None:
        die_with_parent(self.ppid)
        # UvicornWorker.__init__ gave uvicorn's loggers gunicorn's handlers and stopped them
        # propagating; in this (forked) process, route every logger through ours again.
        run_options(self.app).logs.apply()
        super().init_process()

    def run(self) -> None:
        self.config.app = self.wsgi
        self.config.timeout_graceful_shutdown = drain_timeout(self.app, self.cfg.graceful_timeout)
        options = run_options(self.app)
        self.config.ws_per_message_deflate = options.ws_deflate
        self.config.ws_max_size = options.ws_max_size
        server = self._server = DrainingServer(
            self.config,
            watchdog_threshold=options.watchdog_threshold,
            stop_deadline=stop_deadline(self.app, self.cfg.graceful_timeout),
            drain_delay=options.drain_delay,
        )
        install_stop_handlers(server)
        # gunicorn asks for a quick stop with SIGQUIT (its master got SIGINT): no drain delay.
        signal.signal(signal.SIGQUIT, server.handle_exit)
        try:
            server.run(sockets=self.sockets)
        except SystemExit:  # uvicorn's own exit when the lifespan failed to start
            if isinstance(self.wsgi, ConfigErrorGuard) and self.wsgi.error is not None:
                # Every worker would fail alike: halt the arbiter; the runner exits 2.
                report_load_failure(self.app, f"{options.app}: {self.wsgi.error}")
                sys.exit(Arbiter.APP_LOAD_ERROR)
            raise
        sys.exit(exit_code(server))

    async def callback_notify(self) -> None:
        """The heartbeat; also the parent check where the kernel sends no signal on its death."""
        await super().callback_notify()
        if self._server is not None and os.getppid() != self.ppid:
            self._server.handle_exit(signal.SIGTERM, None)


# Under plain `gunicorn -k mainspring.server.worker.MainspringWorker`, the defaults apply.


def report_load_failure(application: object, line: str) -> None:
    """Under `mainspring run` the master prints it, once for all workers; under plain
    gunicorn each worker prints its own."""
    if isinstance(application, MainspringApplication):
        application.load_failure.leave(line)
    else:
        print(f"mainspring: {line}", file=sys.stderr)


def drain_timeout(application: object, default: int) -> int:
    """How long in-flight requests may run on; gunicorn's own deadline also covers shutdown."""
    if isinstance(application, MainspringApplication):
        return application.drain_timeout
    return default


def stop_deadline(application: object, graceful_timeout: int) -> float:
    """How long this worker's stop may take before it ends itself. Under plain gunicorn,
    early enough that its arbiter, which kills it after `graceful_timeout`, need not."""
    if isinstance(application, MainspringApplication):
        return application.stop_deadline
    return max(graceful_timeout - 2 * FORCED_EXIT_GRACE, FORCED_EXIT_GRACE)


def run_options(application: object) -> RunOptions:
    """What `mainspring run` asked for; under plain gunicorn, the defaults."""
    if isinstance(application, MainspringApplication):
        return application.run_options
    # No drain delay: gunicorn's graceful_timeout was not sized for one.
    return RunOptions(app=str(getattr(application, "app_uri", "")), drain_delay=0.0)
