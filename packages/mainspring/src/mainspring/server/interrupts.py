"""Ctrl-C (or SIGTERM) while the runner is still starting: noted, then acted on at a safe point.

Python raises KeyboardInterrupt wherever the main thread happens to be, and an import can turn
it into another error (a class being created wraps it in a RuntimeError), which then reads as
a crash with a traceback; SIGTERM's default action ends the process with no word at all.
Inside `deferred_stop()` the signal is only noted; the runner looks at `requested` once the
block is over and stops cleanly.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        """The first stop signal received inside the block, if any."""

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def note(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signal.Signals(signum)


@contextmanager
def deferred_stop() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM set `requested` instead of interrupting the block.

    After the block both raise KeyboardInterrupt, until the server installs its own
    handlers: the caller catches it for the few steps in between."""
    request = StopRequest()
    for sig in STOP_SIGNALS:
        signal.signal(sig, request.note)
    try:
        yield request
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.default_int_handler)
