"""The loop watchdog: names the call that blocks the event loop, while it blocks.

A daemon thread asks the loop to run a tiny callback every `interval`. When the
answer takes longer than `threshold`, the thread reads the loop thread's stack at
once (the blocking call is still on it), and when the loop answers logs one
warning with how long it was blocked, that stack trimmed to the app's own frames,
and the request or tick that was running. No hook runs per task or per callback.
"""

from __future__ import annotations

import asyncio
import functools
import os
import site
import sys
import sysconfig
import threading
import time
from types import FrameType

import structlog
from structlog.typing import FilteringBoundLogger

import mainspring
from mainspring.observability.context import activity_of
from mainspring.observability.metrics import RuntimeMetrics, runtime_metrics

log: FilteringBoundLogger = structlog.get_logger("mainspring.watchdog")

FALLBACK_DEPTH = 5
"""Innermost frames shown when none of the stack is the app's own code."""


class LoopWatchdog:
    """Watch `loop` from a thread; ``start()`` once, ``stop()`` at shutdown.

    `stuck_after`: a loop blocked that long gets an error line at once, since a
    loop that never answers again would otherwise never be reported.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold: float = 0.1,
        interval: float | None = None,
        stuck_after: float = 10.0,
        metrics: RuntimeMetrics | None = None,
        logger: FilteringBoundLogger | None = None,
    ) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold!r}")
        self.loop = loop
        self.threshold = threshold
        self.interval = threshold / 2 if interval is None else interval
        self.stuck_after = stuck_after
        self._metrics = metrics
        self._log = logger or log
        self._stopping = threading.Event()
        self._answered = threading.Event()
        self._answered_at = 0.0
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this watchdog was already started")
        if _running_loop() is self.loop:
            self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(
            target=self._watch, name="mainspring-loop-watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; safe to call from the loop itself, and more than once."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.threshold + self.interval + 1.0)

    def _beat(self) -> None:
        """Runs on the loop: the loop answered."""
        self._loop_thread = threading.get_ident()
        self._answered_at = time.monotonic()
        self._answered.set()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            self._answered.clear()
            sent = time.monotonic()
            try:
                self.loop.call_soon_threadsafe(self._beat)
            except RuntimeError:  # The loop is closed.
                return
            if self._answered.wait(self.threshold):
                if self._metrics is not None:
                    self._metrics.loop_lag(self._answered_at - sent)
            elif not self._report_block(sent):
                return
            self._stopping.wait(self.interval)

    def _report_block(self, sent: float) -> bool:
        """Log the incident once the loop answers; False when stopped before it did."""
        stack, activity = self._snapshot()
        if self._metrics is not None:
            self._metrics.loop_blocked()
        stuck_reported = False
        while not self._answered.wait(self.threshold):
            if self._stopping.is_set():
                return False
            waited = time.monotonic() - sent
            if not stuck_reported and waited >= self.stuck_after:
                stuck_reported = True
                stack, activity = self._snapshot()
                self._log.error(
                    "event loop still blocked",
                    blocked_ms=round(waited * 1000),
                    blocked_at=stack,
                    **activity,
                )
        blocked = self._answered_at - sent
        if self._metrics is not None:
            self._metrics.loop_lag(blocked)
        self._log.warning(
            "event loop blocked", blocked_ms=round(blocked * 1000), blocked_at=stack, **activity
        )
        return True

    def _snapshot(self) -> tuple[list[str], dict[str, str]]:
        """The loop thread's stack and the activity of its current task, read from outside."""
        frame = sys._current_frames().get(self._loop_thread) if self._loop_thread else None
        stack = project_stack(frame) if frame is not None else []
        activity = activity_of(asyncio.current_task(self.loop)) or {}
        return stack, activity


def install_watchdog(
    threshold: float = 0.1,
    *,
    interval: float | None = None,
    stuck_after: float = 10.0,
    metrics: RuntimeMetrics | None = None,
    logger: FilteringBoundLogger | None = None,
) -> LoopWatchdog:
    """Start a watchdog on the running loop (call from inside it) and return it.

    Its lag and incidents go to `metrics`, by default this process's runtime metrics.
    """
    watchdog = LoopWatchdog(
        asyncio.get_running_loop(),
        threshold=threshold,
        interval=interval,
        stuck_after=stuck_after,
        metrics=metrics or runtime_metrics(),
        logger=logger,
    )
    watchdog.start()
    return watchdog


def project_stack(frame: FrameType) -> list[str]:
    """`frame` and its callers as "file:line in function", innermost first.

    Kept: the app's own frames, and each library frame called directly from them
    (the call that blocked, when it is a library's). Dropped: the rest of the
    standard library, installed packages and mainspring itself (event loop,
    server, framework). With no app frame at all, the innermost few are kept.
    """
    frames: list[FrameType] = []
    current: FrameType | None = frame
    while current is not None:
        frames.append(current)
        current = current.f_back
    owned = [is_project_file(f.f_code.co_filename) for f in frames]
    kept = [f for i, f in enumerate(frames) if owned[i] or (i + 1 < len(frames) and owned[i + 1])]
    return [_describe(f) for f in kept or frames[:FALLBACK_DEPTH]]


def _describe(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


@functools.lru_cache(maxsize=4096)
def is_project_file(filename: str) -> bool:
    """True for the app's source; False for the standard library, installed packages and
    their scripts, mainspring, and code without a file (``<frozen ...>``, ``<string>``)."""
    if filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    return not any(path.startswith(root) for root in _library_roots())


@functools.cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib", "scripts")}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    roots.add(os.path.dirname(mainspring.__file__))
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
