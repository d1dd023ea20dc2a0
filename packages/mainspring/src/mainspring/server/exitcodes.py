"""Every exit code of `mainspring run`, in one place, so scripts and docs can rely on them."""

from __future__ import annotations

from mainspring.lifecycle import EXIT_CRITICAL_FAILURE

EXIT_OK = 0
EXIT_APP_ERROR = 2
"""The app could not be imported, or its configuration is invalid."""
EXIT_STARTUP_FAILURE = EXIT_CRITICAL_FAILURE
"""A critical resource or service failed (at startup or later); gunicorn halts on it too."""
EXIT_ALREADY_RUNNING = 4
"""This app already serves on the port; `--takeover` replaces it."""
EXIT_PORT_UNAVAILABLE = 5
"""Another program holds the port (or it cannot be bound at all); it is never signalled."""
EXIT_STOP_CANCELLED = 6
"""The shutdown met its deadline only by cancelling something: a service still running at
its stop_timeout, a resource close that timed out, or (several workers) a worker that
exited with this code."""
EXIT_STOP_KILLED = 7
"""The shutdown deadline passed with the process still running (its event loop blocked, or
a thread or task that would not end): it was ended from a watchdog thread, which logged
the blocking stack; or (several workers) a worker had to be killed."""


class StartError(Exception):
    """The runner cannot start; `message` is one line for the operator."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
