"""The last resort of the one shutdown deadline: a thread that ends a process whose stop
overran it.

A cooperative stop and a cancellation both need the event loop to run. When the loop is
blocked (a tick in ``time.sleep``, a CPU-bound loop) or the interpreter hangs on its way
out (a thread that never returns, a task that swallows its cancellation), nothing on the
loop can end the process. This thread can: armed when the stop begins, it waits out the
deadline plus a short grace, logs the main thread's stack and exits the process with
:data:`EXIT_STOP_KILLED` (or the exit code the app had already asked for).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

import structlog

from mainspring import lifecycle
from mainspring.observability.watchdog import project_stack
from mainspring.server.exitcodes import EXIT_STOP_KILLED

log = structlog.get_logger("mainspring.server")

FORCED_EXIT_GRACE = 2.0
"""Seconds past the stop deadline before the process is ended: room for the runtime's
minimum close time per resource and the interpreter's own exit."""
REPORT_TIMEOUT = 1.0
"""The log line must not hold the exit: a main thread stuck in a write may hold its lock."""


class StopDeadline:
    """``start()`` once when serving starts; ``arm()`` when the stop begins (from a signal
    handler too). `deadline` is the whole stop's bound in seconds: drain plus shutdown."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._armed = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="mainspring-stop-deadline", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def arm(self) -> None:
        """Start the countdown; later calls change nothing (one deadline per process)."""
        self._armed.set()

    def _watch(self) -> None:
        # A daemon thread: a process that exits in time takes it along, mid-wait.
        self._armed.wait()
        time.sleep(self.deadline + FORCED_EXIT_GRACE)
        code = lifecycle.requested_exit_code() or EXIT_STOP_KILLED
        reporter = threading.Thread(target=self._report, args=(code,), daemon=True)
        reporter.start()
        reporter.join(REPORT_TIMEOUT)
        os._exit(code)

    def _report(self, code: int) -> None:
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        log.critical(
            "shutdown deadline passed; exiting",
            deadline_s=self.deadline,
            grace_s=FORCED_EXIT_GRACE,
            exit_code=code,
            blocked_at=project_stack(frame) if frame is not None else [],
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        sys.stdout.flush()
