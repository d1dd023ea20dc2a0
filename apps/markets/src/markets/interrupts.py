"""Ctrl-C (or SIGTERM) while a command is still starting: noted, then acted on at a safe point.

Python raises KeyboardInterrupt wherever the main thread happens to be, and an import can turn
it into another error (a class being created wraps it in a RuntimeError), which then reads as
a crash with a traceback. Inside `deferred_stop()` the signal is only noted; the caller looks
at `requested` once the block is over and stops cleanly. The server installs its own handlers
when it starts serving.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self) -> None:
        self.requested = False

    def note(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


@contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set `requested` instead of interrupting the block."""
    request = StopRequest()
    previous = {sig: signal.signal(sig, request.note) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
