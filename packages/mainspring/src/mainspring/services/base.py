"""`Service`: a long-lived piece of background work that the supervisor runs."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog

from mainspring.clock import Clock, sleep
from mainspring.observability.metrics import RuntimeMetrics, runtime_metrics
from mainspring.services.loop import LoopSpec, run_loop
from mainspring.services.state import ServiceStatus
from mainspring.services.stopped import ServiceStopped


@dataclass(slots=True)
class ServiceContext:
    """What the supervisor hands a running service instance."""

    name: str
    clock: Clock
    status: ServiceStatus
    rng: random.Random = field(default_factory=random.Random)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: RuntimeMetrics = field(default_factory=runtime_metrics)
    cleaning_up: bool = False
    """Set while on_stop runs: its sleeps wait out their time instead of raising."""


class Service:
    """Subclass and either override :meth:`run` or declare ticks with ``@loop``.

    Subclasses need not call ``super().__init__()``: everything the runtime gives
    a service arrives when the supervisor starts it.
    """

    name: ClassVar[str | None] = None
    """The name shown in status and logs; defaults to the class name."""

    _loops: ClassVar[tuple[LoopSpec, ...]] = ()
    _ctx: ServiceContext | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs: dict[str, LoopSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = getattr(value, "__mainspring_loop__", None)
                if isinstance(spec, LoopSpec):
                    specs[attr] = spec
                elif attr in specs:
                    del specs[attr]
        cls._loops = tuple(specs.values())

    @classmethod
    def default_name(cls) -> str:
        return cls.name or cls.__name__

    def attach(self, ctx: ServiceContext) -> None:
        """Called by the supervisor before :meth:`on_start`."""
        self._ctx = ctx

    @property
    def context(self) -> ServiceContext:
        if self._ctx is None:
            raise RuntimeError(
                f"{type(self).__name__} is not running under a supervisor; "
                "register it with Runtime.supervise()"
            )
        return self._ctx

    @property
    def stopping(self) -> bool:
        """True once the service has been asked to stop; long work should check it."""
        return self._ctx is not None and self._ctx.stop.is_set()

    @property
    def fencing_token(self) -> int | None:
        """The lease term of a singleton; pass it to writes that must reject a stale holder."""
        return self.context.status.fencing_token

    @property
    def log(self) -> Any:
        return structlog.get_logger("mainspring.service").bind(service=self.context.name)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the runtime's clock; raises :class:`ServiceStopped` as soon as the service
        is asked to stop (before or during the sleep), which ends it cleanly.

        In :meth:`on_stop` (which runs once stop was asked) it is a plain sleep, bounded by
        the service's cleanup budget, so a hook can wait for work to drain."""
        ctx = self.context
        if ctx.cleaning_up:
            await sleep(ctx.clock, seconds)
        elif await sleep(ctx.clock, seconds, ctx.stop):
            raise ServiceStopped(ctx.name)

    async def on_start(self) -> None:
        """Prepare before running; raising here counts as a crash."""

    async def on_stop(self) -> None:
        """Release what :meth:`on_start` took; runs after every run, clean or not."""

    async def run(self) -> None:
        """Run every ``@loop`` of the service until it is asked to stop."""
        if not self._loops:
            raise NotImplementedError(
                f"{type(self).__name__} must override run() or declare at least one @loop"
            )
        ctx = self.context
        async with asyncio.TaskGroup() as group:
            for spec in self._loops:
                group.create_task(
                    run_loop(self, spec, ctx, ctx.rng), name=f"{ctx.name}.{spec.name}"
                )
