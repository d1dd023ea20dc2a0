"""gunicorn's arbiter, keeping two records of its workers.

- Their lineage in the pidfile (pid and start time of each), so that a later takeover
  recognises them as this instance's own even once they are orphaned.
- How they ended while the server stopped, so that the master's exit code is never 0
  when a worker had to be killed or had to cancel work to meet its deadline.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.errors import HaltServer  # type: ignore[import-untyped]

from mainspring.server import ports
from mainspring.server.exitcodes import EXIT_OK, EXIT_STOP_KILLED
from mainspring.server.pidfile import Pidfile, ProcessRef


class MainspringArbiter(Arbiter):  # type: ignore[misc]
    def __init__(self, app: Any, lineage: Pidfile | None) -> None:
        super().__init__(app)
        self.lineage = lineage
        self.recorded: list[ProcessRef] = []
        self.stopping = False
        self.stop_outcome = EXIT_OK
        """EXIT_STOP_KILLED when a worker was killed while stopping, else the first non-zero
        code a worker exited with then, else 0."""

    def spawn_worker(self) -> int:
        pid: int = super().spawn_worker()  # In the worker this never returns.
        self._record_lineage()
        return pid

    def reap_workers(self) -> None:
        if self.stopping:
            for pid in list(self.WORKERS):
                self._note(_exit_status(pid))
        self._reap()
        self._record_lineage()

    def _reap(self) -> None:
        """gunicorn's reaping. Once stopping, a worker that failed to load (as its peers did)
        no longer raises HaltServer: the arbiter is halting already, and a second one would
        escape the halt as a traceback and exit 1."""
        while True:
            try:
                super().reap_workers()
                return
            except HaltServer:
                if not self.stopping:
                    raise

    def kill_worker(self, pid: int, sig: int) -> None:
        if self.stopping and sig == signal.SIGKILL and pid in self.WORKERS:
            self._note(EXIT_STOP_KILLED)
        super().kill_worker(pid, sig)

    def stop(self, graceful: bool = True) -> None:
        self.stopping = True
        super().stop(graceful)

    def _note(self, code: int | None) -> None:
        if code and (code == EXIT_STOP_KILLED or self.stop_outcome == EXIT_OK):
            self.stop_outcome = code

    def _record_lineage(self) -> None:
        if self.lineage is None:
            return
        infos = (ports.process_info(pid) for pid in sorted(self.WORKERS))
        workers = [(info.pid, info.start_time) for info in infos if info is not None]
        if workers != self.recorded:
            self.lineage.record_workers(workers)
            self.recorded = workers


def _exit_status(pid: int) -> int | None:
    """How worker `pid` ended, without reaping it (gunicorn does): its exit code, or
    EXIT_STOP_KILLED when a signal killed it; None while it runs."""
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if result is None:
        return None
    return result.si_status if result.si_code == os.CLD_EXITED else EXIT_STOP_KILLED
