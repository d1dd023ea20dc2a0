"""Several worker processes under gunicorn's arbiter, on the socket the runner bound."""

from __future__ import annotations

import contextlib
import gc
import os
import select
import sys
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.importer import import_from_string

from mainspring.observability.metrics import mark_worker_dead
from mainspring.server.arbiter import MainspringArbiter
from mainspring.server.config_guard import ConfigErrorGuard
from mainspring.server.exitcodes import EXIT_APP_ERROR, EXIT_OK
from mainspring.server.gunicorn_logs import GunicornLogger
from mainspring.server.metrics_port import MetricsPort
from mainspring.server.options import RunOptions
from mainspring.server.pidfile import Pidfile
from mainspring.server.serving import served_app

WORKER_CLASS = "mainspring.server.worker.MainspringWorker"
SILENT_WORKER_TIMEOUT = 120
"""The least time gunicorn lets a worker go without a heartbeat before killing it, in s."""


class LoadFailureNote:
    """The line a worker leaves for the master when the app failed to load. Every worker
    fails alike; the master prints the line once, after the arbiter halted.

    A pipe made before the workers are forked. Both ends are non-blocking: a write of at
    most PIPE_BUF bytes is whole or nothing, and a worker never waits on a full pipe (a
    note is in it already)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def leave(self, line: str) -> None:
        data = line.replace("\n", " ").encode()[: select.PIPE_BUF - 1] + b"\n"
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, data)

    def first(self) -> str | None:
        try:
            data = os.read(self._read, select.PIPE_BUF)
        except BlockingIOError:
            return None
        return data.decode(errors="replace").split("\n", 1)[0] or None

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


class MainspringApplication(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from code, never from argv, a config file or GUNICORN_CMD_ARGS."""

    def __init__(
        self,
        options: RunOptions,
        fd: int,
        *,
        stop_deadline: float,
        stop_timeout: int,
        metrics_port: MetricsPort | None = None,
        pidfile: Pidfile | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.run_options = options
        self.stop_deadline = stop_deadline
        """Each worker ends itself this long (plus a short grace) after its stop began."""
        self.metrics_port = metrics_port
        self.pidfile = pidfile
        self.on_ready = on_ready
        self.arbiter: MainspringArbiter | None = None
        self.load_failure = LoadFailureNote()
        self.options: dict[str, Any] = {
            "bind": [f"fd://{fd}"],
            "workers": options.workers,
            "worker_class": WORKER_CLASS,
            # The arbiter SIGKILLs workers after this; leave them time for the drain delay,
            # in-flight requests and the app's shutdown.
            "graceful_timeout": stop_timeout,
            # uvicorn's worker turns it into its keep-alive timeout: one meaning for any
            # number of workers.
            "keepalive": options.keepalive,
            # A worker sends no heartbeat until its lifespan start-up is done, and start-up
            # may wait for the migration lock and migrate: gunicorn's default 30 s would kill
            # it mid-start and respawn it in a loop. Two minutes or the stop timeout, which
            # is longer.
            "timeout": max(SILENT_WORKER_TIMEOUT, stop_timeout),
            "control_socket_disable": True,
            "proc_name": f"mainspring {options.app}",
            "logger_class": GunicornLogger,
            "when_ready": self.when_ready,
            "child_exit": child_exit,
        }
        super().__init__()

    @property
    def drain_timeout(self) -> int:
        return self.run_options.graceful_timeout

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """In each worker: the app as `mainspring run` serves it."""
        app = served_app(import_from_string(self.run_options.app), self.run_options)
        return ConfigErrorGuard(app)

    def run(self) -> None:
        """gunicorn's own `run`, with the arbiter that records its workers."""
        self.arbiter = MainspringArbiter(self, self.pidfile)
        self.arbiter.run()

    @property
    def stop_outcome(self) -> int:
        """How the workers ended while the server stopped (see MainspringArbiter)."""
        return self.arbiter.stop_outcome if self.arbiter is not None else EXIT_OK

    def when_ready(self, arbiter: Any) -> None:
        """The master reads every worker's metrics files, so it serves the metrics port;
        it alone says where the app is served, once."""
        if self.metrics_port is not None:
            self.metrics_port.start()
        if self.on_ready is not None:
            self.on_ready()


def child_exit(arbiter: Any, worker: Any) -> None:
    """A dead worker's in-flight requests and service states no longer count."""
    mark_worker_dead(worker.pid)


def serve_workers(
    options: RunOptions,
    fd: int,
    *,
    stop_deadline: float,
    stop_timeout: int,
    metrics_port: MetricsPort | None,
    pidfile: Pidfile | None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run gunicorn's arbiter until it stops; return its exit status, or how the workers
    ended when the arbiter itself stopped cleanly."""
    application = MainspringApplication(
        options,
        fd,
        stop_deadline=stop_deadline,
        stop_timeout=stop_timeout,
        metrics_port=metrics_port,
        pidfile=pidfile,
        on_ready=on_ready,
    )
    master = os.getpid()
    # What the app built at import is shared with the workers forked from here. Frozen, no
    # worker's collections walk it: its pages stay shared, and a worker's exit no longer
    # spends seconds in a full collection over its copy of the heap.
    gc.freeze()
    try:
        application.run()
    except SystemExit as exc:
        if os.getpid() != master:
            raise  # A forked worker is leaving; its exit is gunicorn's business.
        code = exc.code if isinstance(exc.code, int) else 1
        if code == Arbiter.APP_LOAD_ERROR:  # A worker's config error: the runner exits 2.
            note = application.load_failure.first()
            if note is not None:
                print(f"mainspring: {note}", file=sys.stderr)
            return EXIT_APP_ERROR
        return code or application.stop_outcome
    finally:
        if os.getpid() == master:
            application.load_failure.close()
    return application.stop_outcome
