"""`@loop`: a method that the service runs on an interval, without overlap."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from mainspring.observability.context import LoopTags
from mainspring.observability.tracing import tick_span
from mainspring.services.policy import Backoff
from mainspring.services.state import ErrorInfo, LoopStatus
from mainspring.services.stopped import ServiceStopped

if TYPE_CHECKING:
    from mainspring.services.base import Service, ServiceContext

Seconds = float | int | timedelta
Interval = Seconds | Callable[[Any], Seconds]
TickFunc = TypeVar("TickFunc", bound=Callable[[Any], Awaitable[None]])

log = structlog.get_logger("mainspring.loop")
tick_lines = logging.getLogger("mainspring.loop")
"""Checked before the per-tick line, so a hot loop pays nothing when INFO is off for it."""


def seconds(value: Seconds) -> float:
    """A number of seconds or a timedelta, as float seconds."""
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if result < 0:
        raise ValueError(f"an interval cannot be negative, got {value!r}")
    return result


@dataclass(frozen=True)
class LoopSpec:
    name: str
    func: Callable[[Any], Awaitable[None]]
    every: Interval
    run_at_start: bool = True
    jitter: float = 0.0
    timeout: float | None = None
    failure_backoff: Backoff = field(default_factory=Backoff)

    def interval(self, service: Service) -> float:
        """The wait before the next tick; a callable `every` is asked after each tick."""
        every = self.every
        return seconds(every(service) if callable(every) else every)


def loop(
    every: Interval,
    *,
    run_at_start: bool = True,
    jitter: Seconds = 0.0,
    timeout: Seconds | None = None,
    failure_backoff: Backoff | None = None,
) -> Callable[[TickFunc], TickFunc]:
    """Declare a service method as a loop tick.

    `every` is seconds, a timedelta, or a callable taking the service (evaluated
    after each tick, for adaptive intervals). `jitter` adds up to that many
    seconds to each wait. A tick longer than `timeout` is cancelled and counted as
    a failure. After consecutive failures the wait grows as `failure_backoff`.
    """
    if not callable(every):
        seconds(every)

    def mark(func: TickFunc) -> TickFunc:
        func.__mainspring_loop__ = LoopSpec(  # type: ignore[attr-defined]
            name=func.__name__,
            func=func,
            every=every,
            run_at_start=run_at_start,
            jitter=seconds(jitter),
            timeout=None if timeout is None else seconds(timeout),
            failure_backoff=failure_backoff or Backoff(),
        )
        return func

    return mark


async def run_loop(
    service: Service, spec: LoopSpec, ctx: ServiceContext, rng: random.Random
) -> None:
    """Tick `spec` until the service is asked to stop. A failing tick never ends the loop.

    Each tick runs in a fresh log context naming the service, the loop and the tick,
    inside a tracing span when tracing is on, and is counted in the metrics. This is
    the hot path of every ``@loop(every=0)``: the clock is read twice per tick, a
    fixed interval is computed once, and times stay monotonic until shown.
    """
    clock, stop, tick, metrics = ctx.clock, ctx.stop, spec.func, ctx.metrics
    status = ctx.status.loops.setdefault(spec.name, LoopStatus(spec.name))
    tags = LoopTags(ctx.name, spec.name)
    adaptive = callable(spec.every)
    interval = status.interval = spec.interval(service)
    now = clock.monotonic()
    next_at = now + (0.0 if spec.run_at_start else interval)
    while True:
        if spec.jitter:
            next_at += rng.uniform(0, spec.jitter)
        status.next_tick_at = next_at
        if next_at > now:
            if await clock.sleep_until(next_at, stop):
                return
        else:
            if stop.is_set():
                return
            await asyncio.sleep(0)
            if stop.is_set():
                return
        tags.begin()
        started = status.last_tick_started = clock.monotonic()
        status.next_tick_at = None
        failed = False
        try:
            with tick_span(ctx.name, spec.name):
                if spec.timeout is None:
                    await tick(service)
                else:
                    async with clock.timeout(spec.timeout):
                        await tick(service)
        except ServiceStopped:
            return  # The tick slept after stop was asked: the loop ends as at its own wait.
        except Exception as exc:
            failed = True
            _record_failure(spec, ctx, status, exc)
        else:
            status.consecutive_failures = 0
        now = clock.monotonic()
        status.ticks += 1
        status.last_tick_duration = now - started
        metrics.tick_finished(ctx.name, spec.name, now - started, failed)
        if not failed and tick_lines.isEnabledFor(logging.INFO):
            log.info("tick done", duration_ms=round((now - started) * 1000, 3))
        if adaptive:
            try:
                interval = status.interval = spec.interval(service)
            except Exception as exc:  # keep the last interval; the tick counts as failed
                if not failed:
                    status.consecutive_failures = 0
                failed = True
                _record_failure(spec, ctx, status, exc)
        next_at = started + interval
        if failed:
            next_at = max(next_at, now + spec.failure_backoff.ceiling(status.consecutive_failures))


def _record_failure(
    spec: LoopSpec, ctx: ServiceContext, status: LoopStatus, exc: Exception
) -> None:
    status.failures += 1
    status.consecutive_failures += 1
    status.last_error = ErrorInfo.from_exception(exc, ctx.clock.time())
    logger = log.bind(service=ctx.name, loop=spec.name)
    if isinstance(exc, TimeoutError) and spec.timeout is not None:
        logger.error("tick timed out", timeout=spec.timeout)
    else:
        logger.exception("tick failed", failures=status.consecutive_failures)
