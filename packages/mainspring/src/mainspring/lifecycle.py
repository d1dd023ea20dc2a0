"""Process-wide shutdown signals shared by the runner and every Runtime in the process.

The runner hears SIGTERM before the app does; it calls :func:`begin_draining` so
that /ready answers 503 while in-flight requests finish. A runtime whose critical
service failed calls :func:`request_exit` so the runner exits non-zero; one whose
shutdown had to cancel something calls :func:`note_forced_stop`, for the same reason.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable

_draining = threading.Event()
_on_draining: list[Callable[[], None]] = []
_exit_code: int | None = None
_stop_forced = False

EXIT_CRITICAL_FAILURE = 3
"""Exit code when a critical service failed; gunicorn's arbiter halts on it too."""


def begin_draining() -> None:
    """Called from a signal handler: callbacks must only hand work to their event loop."""
    first = not _draining.is_set()
    _draining.set()
    if first:
        for callback in list(_on_draining):
            callback()


def on_draining(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` when the process starts draining; returns a function that unhooks it.

    Long-lived streams use this to end at once instead of holding the server's shutdown.
    """
    _on_draining.append(callback)
    return lambda: _on_draining.remove(callback) if callback in _on_draining else None


def on_draining_in_loop(callback: Callable[[], None]) -> Callable[[], None]:
    """Like :func:`on_draining`, but `callback` runs on the calling event loop, not in the
    signal handler; returns the function that unhooks it."""
    loop = asyncio.get_running_loop()

    def hand_over() -> None:
        loop.call_soon_threadsafe(callback)

    return on_draining(hand_over)


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


def note_forced_stop() -> None:
    """Record that a shutdown met its deadline only by cancelling something (the runtime
    logs what): the runner then exits non-zero instead of 0."""
    global _stop_forced
    _stop_forced = True


def stop_was_forced() -> bool:
    """Whether a shutdown in this process had to cancel something."""
    return _stop_forced


def forget_forced_stop() -> None:
    """Clear the record, for tests that run several runtimes in one process."""
    global _stop_forced
    _stop_forced = False
