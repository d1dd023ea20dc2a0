"""Process-wide shutdown signals shared by the runner and every Runtime in the process.

The runner hears SIGTERM before the app does; it calls :func:`begin_draining` so
that /ready answers 503 while in-flight requests finish. A runtime whose critical
service failed calls :func:`request_exit` so the runner exits non-zero.
"""

from __future__ import annotations

import os
import signal
import threading

_draining = threading.Event()
_exit_code: int | None = None

EXIT_CRITICAL_FAILURE = 3
"""Exit code when a critical service failed; gunicorn's arbiter halts on it too."""


def begin_draining() -> None:
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()


def request_exit(code: int = EXIT_CRITICAL_FAILURE) -> None:
    """Record `code` as the process's exit code and start a graceful shutdown."""
    global _exit_code
    _exit_code = code
    begin_draining()
    os.kill(os.getpid(), signal.SIGTERM)


def requested_exit_code() -> int | None:
    return _exit_code
