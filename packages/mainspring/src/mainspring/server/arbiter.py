"""gunicorn's arbiter, keeping two records of its workers.

- Their lineage in the pidfile (pid and start time of each), so that a later takeover
  recognises them as this instance's own even once they are orphaned.
- How they ended while the server stopped, so that the master's exit code is never 0
  when a worker had to be killed or had to cancel work to meet its deadline.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.errors import HaltServer  # type: ignore[import-untyped]

from mainspring.server import ports
from mainspring.server.exitcodes import EXIT_OK, EXIT_STOP_KILLED
from mainspring.server.pidfile import Pidfile, ProcessRef

KILLED_REAP_TIMEOUT = 5.0
"""How long the master waits to reap a worker it sent SIGKILL at the stop deadline, in s."""


class MainspringArbiter(Arbiter):  # type: ignore[misc]
    reexec_pid: int
    """gunicorn's: the pid of a new master started by USR2, or 0."""

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
        """gunicorn's reaping loop, reading each worker's status where it is reaped: a
        worker that exits while the loop runs is noted too."""
        try:
            while True:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if not pid:
                    break
                self._reaped(pid, status)
        except ChildProcessError:
            pass
        self._record_lineage()

    def kill_worker(self, pid: int, sig: int) -> None:
        super().kill_worker(pid, sig)
        if self.stopping and sig == signal.SIGKILL and pid in self.WORKERS:
            self._reap_killed(pid)

    def stop(self, graceful: bool = True) -> None:
        self.stopping = True
        super().stop(graceful)

    def _reaped(self, pid: int, status: int) -> None:
        """What gunicorn does with a reaped child, noting a worker's end while stopping."""
        if pid == self.reexec_pid:
            self.reexec_pid = 0
            return
        if pid == self.dirty_arbiter_pid:
            self.handle_dirty_arbiter_exit(pid, status)
            return
        worker = self.WORKERS.pop(pid, None)
        if worker is None:  # an orphan reparented onto a master running as PID 1
            self.log.debug("Reaped unknown child process (pid:%s, status:%s)", pid, status)
            return
        if self.stopping:
            self._note(_stop_code(status))
        if os.WIFSIGNALED(status):
            _log_signalled(self.log, pid, os.WTERMSIG(status))
        elif code := os.WEXITSTATUS(status):
            self.log.error("Worker (pid:%s) exited with code %s.", pid, code)
            # Once stopping, a worker that failed as its peers did halts nothing more: the
            # arbiter is halting already, and a second HaltServer would escape as a traceback.
            if code == self.WORKER_BOOT_ERROR and not self.stopping:
                raise HaltServer("Worker failed to boot.", self.WORKER_BOOT_ERROR)
            if code == self.APP_LOAD_ERROR and not self.stopping:
                raise HaltServer("App failed to load.", self.APP_LOAD_ERROR)
        worker.tmp.close()
        self.cfg.child_exit(self, worker)

    def _reap_killed(self, pid: int) -> None:
        """Reap a worker just killed at the stop deadline, so that one which had exited
        before the kill keeps its own code; one that will not die counts as killed."""
        deadline = time.monotonic() + KILLED_REAP_TIMEOUT
        while True:
            try:
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if reaped:
                self._reaped(reaped, status)
                return
            if time.monotonic() >= deadline:
                self._note(EXIT_STOP_KILLED)
                return
            time.sleep(0.01)

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


def _stop_code(status: int) -> int:
    """A worker's exit code, or EXIT_STOP_KILLED when a signal killed it."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_STOP_KILLED


def _log_signalled(log: Any, pid: int, sig: int) -> None:
    """gunicorn's line for a worker a signal killed, at its level."""
    try:
        name = signal.Signals(sig).name
    except ValueError:
        name = f"signal {sig}"
    if sig == signal.SIGKILL:
        log.error("Worker (pid:%s) was sent %s! Perhaps out of memory?", pid, name)
    elif sig == signal.SIGTERM:
        log.info("Worker (pid:%s) was sent %s!", pid, name)
    else:
        log.warning("Worker (pid:%s) was sent %s!", pid, name)
