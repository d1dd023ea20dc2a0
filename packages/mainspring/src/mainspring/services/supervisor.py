"""The supervisor: starts services, restarts them with backoff, stops them on a deadline.

Each service gets one supervision task. Nothing a service does (raising in
``__init__``, ``on_start``, a tick or ``run``; hanging; ignoring the stop
signal) can reach the app or another service: it ends up in the service's
status and in the log.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from mainspring.clock import Clock, sleep
from mainspring.leases.base import Lease, LeaseBackend
from mainspring.observability.metrics import RuntimeMetrics
from mainspring.services.base import Service, ServiceContext
from mainspring.services.policy import CrashWindow, RestartPolicy
from mainspring.services.state import ErrorInfo, ServiceState, ServiceStatus
from mainspring.services.stopped import ServiceStopped
from mainspring.services.tasks import TaskSet

log = structlog.get_logger("mainspring.supervisor")

LEASE_CALL_TIMEOUT = 5.0
"""No lease backend call may hold a supervisor longer than this, in seconds."""
_NOBODY_TOLD = object()
"""A standby has not logged who holds its lease yet."""

StatusListener = Callable[[ServiceStatus], None]
"""Told of a service's status each time its state or reason changes (see `on_change`)."""


@dataclass
class ServiceSpec:
    """How one service is to be run; built by ``Runtime.supervise``."""

    name: str
    factory: Callable[[], Service]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    start_delay: float = 0.0
    singleton: bool = False
    critical: bool = False
    stop_timeout: float = 5.0
    kind: type[Service] | None = None
    """The service's class when known before it is built (not for a lambda factory)."""


class _Supervision:
    """The supervisor's record of one service: its spec, status and current instance."""

    __slots__ = (
        "_finished",
        "_stopping",
        "crashes",
        "done",
        "first_start_done",
        "instance",
        "instance_stop",
        "kind",
        "lease_lost",
        "spec",
        "status",
        "stop_requested",
        "told",
    )

    def __init__(self, spec: ServiceSpec, status: ServiceStatus) -> None:
        self.spec = spec
        self.status = status
        self.crashes = CrashWindow(spec.policy)
        self.stop_requested = False
        self.done = False
        self._stopping: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self.instance: Service | None = None
        self.kind = spec.kind
        self.instance_stop: asyncio.Event | None = None
        self.first_start_done = False
        self.lease_lost = False
        self.told: tuple[ServiceState, str | None] | None = None
        """The state and reason listeners were last told of."""

    # The two events are made when first waited on: an idle service never needs them.
    @property
    def stopping(self) -> asyncio.Event:
        """Set once the service is asked to stop; wakes the supervisor's own waits."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
            if self.stop_requested:
                self._stopping.set()
        return self._stopping

    @property
    def finished(self) -> asyncio.Event:
        """Set once the supervision is over."""
        if self._finished is None:
            self._finished = asyncio.Event()
            if self.done:
                self._finished.set()
        return self._finished

    def request_stop(self) -> None:
        self.stop_requested = True
        if self._stopping is not None:
            self._stopping.set()
        if self.instance_stop is not None:
            self.instance_stop.set()

    def finish(self) -> None:
        self.done = True
        if self._finished is not None:
            self._finished.set()


class Supervisor:
    def __init__(
        self,
        *,
        clock: Clock,
        tasks: TaskSet,
        leases: Callable[[], LeaseBackend],
        holder_id: str,
        on_fatal: Callable[[str], None],
        rng: random.Random,
        metrics: RuntimeMetrics,
    ) -> None:
        self._clock = clock
        self._tasks = tasks
        self._leases = leases
        self._holder_id = holder_id
        self._on_fatal = on_fatal
        self._rng = rng
        self._metrics = metrics
        self._services: dict[str, _Supervision] = {}
        self._listeners: list[StatusListener] = []

    def on_change(self, listener: StatusListener) -> Callable[[], None]:
        """Call `listener` with a service's status whenever its state or reason changes,
        from then on; returns a function that removes it.

        It is called synchronously, on the event loop, with the live status object: read
        what it needs at once and never block (hand the rest to a queue). What it raises
        is logged, never propagated to the service.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- registration ---------------------------------------------------------------

    def disable(
        self,
        name: str,
        reason: str,
        *,
        critical: bool,
        singleton: bool,
        kind: type[Service] | None = None,
    ) -> ServiceStatus:
        self._check_new(name)
        status = ServiceStatus(
            name, ServiceState.DISABLED, reason=reason, critical=critical, singleton=singleton
        )
        record = _Supervision(ServiceSpec(name, _never_built, kind=kind), status)
        self._metrics.service_state(name, ServiceState.DISABLED.value)
        record.first_start_done = True
        record.finish()
        self._services[name] = record
        log.info("service disabled", service=name, reason=reason)
        self._tell(record)
        return status

    def start(self, spec: ServiceSpec) -> ServiceStatus:
        self._check_new(spec.name)
        status = ServiceStatus(spec.name, critical=spec.critical, singleton=spec.singleton)
        record = _Supervision(spec, status)
        delayed = spec.start_delay > 0
        first = ServiceState.STANDBY if spec.singleton else ServiceState.STARTING
        if delayed:
            status.reason = f"starts after a delay of {spec.start_delay:g}s"
        self._services[spec.name] = record
        self._set_state(record, ServiceState.STOPPED if delayed else first)
        self._tasks.spawn(self._supervise(record), name=f"supervise:{spec.name}")
        return status

    def _check_new(self, name: str) -> None:
        if name in self._services:
            raise ValueError(f"a service named {name!r} is already supervised; pass name=...")

    # -- queries --------------------------------------------------------------------

    def statuses(self) -> list[ServiceStatus]:
        return [record.status for record in self._services.values()]

    def instance(self, name: str) -> Service | None:
        record = self._services.get(name)
        return record.instance if record else None

    def kind(self, name: str) -> type[Service] | None:
        """The class of the service called `name`, once known."""
        record = self._services.get(name)
        return record.kind if record else None

    def instances(self) -> list[Service]:
        return [r.instance for r in self._services.values() if r.instance is not None]

    def still_starting(self) -> list[str]:
        """Services in the first start they make with the process (readiness waits for
        them); a delayed service or a singleton that wins its lease later never makes a
        ready process unready."""
        return [
            name
            for name, record in self._services.items()
            if not record.first_start_done
            and record.spec.start_delay <= 0
            and not record.spec.singleton
        ]

    # -- one service's life ---------------------------------------------------------

    async def _supervise(self, record: _Supervision) -> None:
        spec, status = record.spec, record.status
        attempt = 0
        try:
            if spec.start_delay > 0:
                if await sleep(self._clock, spec.start_delay, record.stopping):
                    return
                status.reason = None  # no longer waiting for the delay
            while not record.stop_requested:
                lease: tuple[Lease, float] | None = None
                if spec.singleton:
                    lease = await self._acquire(record)
                    if lease is None:
                        return
                began = self._clock.monotonic()
                try:
                    error = await self._run_instance(record, lease)
                finally:
                    if lease is not None:
                        await self._release(record, lease[0])
                if record.stop_requested:
                    return
                if record.lease_lost:
                    record.lease_lost = False
                    continue
                if self._clock.monotonic() - began >= spec.policy.stable_after:
                    attempt = 0
                if error is not None:
                    status.crashes += 1
                    if record.crashes.record(self._clock.monotonic()):
                        self._fail(
                            record,
                            f"crashed more than {spec.policy.max_crashes} times "
                            f"in {spec.policy.window:g}s",
                        )
                        return
                    if spec.policy.mode == "never":
                        self._fail(record, "crashed and its restart policy is 'never'")
                        return
                elif spec.policy.mode != "always":
                    status.reason = "run() returned"
                    self._set_state(record, ServiceState.STOPPED)
                    log.info("service finished", service=spec.name)
                    return
                attempt += 1
                delay = spec.policy.backoff.delay(attempt, self._rng)
                self._set_state(record, ServiceState.BACKOFF)
                status.next_restart_at = self._clock.time() + delay
                log.warning(
                    "service restarting after backoff",
                    service=spec.name,
                    delay=round(delay, 3),
                    attempt=attempt,
                )
                if await sleep(self._clock, delay, record.stopping):
                    return
                status.restarts += 1
                self._metrics.service_restarted(spec.name)
                status.next_restart_at = None
        finally:
            record.first_start_done = True
            record.instance = None
            if status.state is not ServiceState.FAILED:
                self._set_state(record, ServiceState.STOPPED)
            status.next_restart_at = None
            record.finish()

    async def _run_instance(
        self, record: _Supervision, lease: tuple[Lease, float] | None
    ) -> Exception | None:
        """Build, start and run one instance; returns what it crashed with, if anything."""
        spec, status, clock = record.spec, record.status, self._clock
        ctx = ServiceContext(spec.name, clock, status, rng=self._rng, metrics=self._metrics)
        record.instance_stop = ctx.stop
        if record.stop_requested:
            ctx.stop.set()
        status.reason = None
        self._set_state(record, ServiceState.STARTING)
        instance: Service | None = None
        try:
            instance = spec.factory()
            record.kind = type(instance)
            instance.attach(ctx)
            if lease is None:
                await self._start_and_run(record, instance)
            else:
                await self._run_holding(record, instance, ctx, lease[0], lease[1])
            return None
        except Exception as exc:
            status.last_error = ErrorInfo.from_exception(exc, clock.time())
            log.exception("service crashed", service=spec.name)
            return exc
        finally:
            record.first_start_done = True
            record.instance = None
            if instance is not None:
                await self._call_on_stop(record, instance, ctx)

    async def _start_and_run(self, record: _Supervision, instance: Service) -> None:
        try:
            await instance.on_start()
            if instance.stopping:  # asked to stop (shutdown, lost lease) while it was starting
                return
            record.instance = instance
            record.first_start_done = True
            self._set_state(record, ServiceState.RUNNING)
            log.info(
                "service running", service=record.spec.name, lease_term=record.status.fencing_token
            )
            await instance.run()
        except* ServiceStopped:
            pass  # It slept after being asked to stop: a clean stop, from a task group too.

    async def _call_on_stop(
        self, record: _Supervision, instance: Service, ctx: ServiceContext
    ) -> None:
        ctx.cleaning_up = True
        try:
            async with self._clock.timeout(_cleanup_budget(record.spec.stop_timeout)):
                await instance.on_stop()
        except Exception as exc:
            record.status.last_error = ErrorInfo.from_exception(exc, self._clock.time())
            log.exception("service on_stop failed", service=record.spec.name)

    # -- singletons -----------------------------------------------------------------

    async def _acquire(self, record: _Supervision) -> tuple[Lease, float] | None:
        """Wait in standby until the lease is ours: the lease and when the winning attempt
        was sent; None when asked to stop meanwhile."""
        spec, status = record.spec, record.status
        backend = self._leases()
        backend_down = False
        told: object = _NOBODY_TOLD
        while not record.stop_requested:
            self._set_state(record, ServiceState.STANDBY)
            sent = self._clock.monotonic()
            try:
                async with self._clock.timeout(LEASE_CALL_TIMEOUT):
                    lease = await backend.try_acquire(spec.name, self._holder_id)
                    holder = None if lease else await backend.holder(spec.name)
            except Exception as exc:
                status.reason = f"lease backend unreachable: {type(exc).__name__}: {exc}"
                status.last_error = ErrorInfo.from_exception(exc, self._clock.time())
                if not backend_down:
                    log.warning("lease backend unreachable", service=spec.name, error=str(exc))
                backend_down = True
            else:
                backend_down = False
                if lease is not None:
                    self._metrics.lease_held(spec.name, True)
                    status.lease_holder = lease.holder
                    status.fencing_token = lease.token
                    log.info("lease acquired", service=spec.name, lease_term=lease.token)
                    return lease, sent
                status.lease_holder = holder
                status.reason = f"standby: lease held by {holder or 'another process'}"
                if holder != told:  # once per holder, not at every retry
                    log.info(
                        "lease held by another process; standing by",
                        service=spec.name,
                        holder=holder or "unknown",
                    )
                    told = holder
            self._tell(record)
            retry = backend.retry_interval if not backend_down else LEASE_CALL_TIMEOUT
            if await sleep(self._clock, retry, record.stopping):
                return None
        return None

    async def _run_holding(
        self,
        record: _Supervision,
        instance: Service,
        ctx: ServiceContext,
        lease: Lease,
        acquired_at: float,
    ) -> None:
        finished = asyncio.Event()

        async def body() -> None:
            # The lease is renewed from before on_start: a slow start must not let it lapse.
            try:
                await self._start_and_run(record, instance)
            finally:
                finished.set()
                ctx.stop.set()

        try:
            async with asyncio.TaskGroup() as group:
                running = group.create_task(body(), name=f"{record.spec.name}.run")
                group.create_task(
                    self._keep(record, lease, ctx, running, finished, acquired_at),
                    name=f"{record.spec.name}.lease",
                )
        except ExceptionGroup as group:
            raise group.exceptions[0] from None

    async def _keep(
        self,
        record: _Supervision,
        lease: Lease,
        ctx: ServiceContext,
        running: asyncio.Task[None],
        finished: asyncio.Event,
        acquired_at: float,
    ) -> None:
        """Renew the lease while the service runs; on loss, stop the service within its bound.

        A renewal confirms the lease from the moment it was *sent*. When renewals fail
        with errors the lease is trusted only while the next attempt would still fall
        within its grace; stepping down then leaves the service until the lease would
        expire (and never more than its stop_timeout) before it is cancelled, so the
        old holder is gone before a standby can take over.
        """
        clock = self._clock
        confirmed = acquired_at
        while not await sleep(clock, lease.renew_interval, ctx.stop):
            sent = clock.monotonic()
            try:
                async with clock.timeout(lease.renew_interval):
                    held = await lease.renew()
            except Exception as exc:
                if clock.monotonic() + lease.renew_interval - confirmed < lease.grace:
                    log.warning(
                        "lease renewal failed, still within grace", service=ctx.name, error=str(exc)
                    )
                    continue
                reason = f"lease could not be renewed: {type(exc).__name__}: {exc}"
            else:
                if held:
                    confirmed = sent
                    continue
                reason = "lease lost to another holder"
            log.warning("stepping down", service=ctx.name, reason=reason)
            record.lease_lost = True
            record.status.reason = reason
            self._set_state(record, ServiceState.STOPPING)
            ctx.stop.set()
            expires = confirmed + lease.grace + lease.renew_interval
            deadline = min(clock.monotonic() + record.spec.stop_timeout, expires)
            if not await clock.sleep_until(deadline, finished):
                log.error(
                    "service ignored stop after losing its lease; cancelling", service=ctx.name
                )
                running.cancel()
            return

    async def _release(self, record: _Supervision, lease: Lease) -> None:
        try:
            async with self._clock.timeout(_cleanup_budget(LEASE_CALL_TIMEOUT)):
                await lease.release()
        except Exception as exc:
            log.warning("lease release failed", service=record.spec.name, error=str(exc))
        self._metrics.lease_held(record.spec.name, False)
        record.status.lease_holder = None
        record.status.fencing_token = None

    def _set_state(self, record: _Supervision, state: ServiceState) -> None:
        """Set the state (its reason, if any, first: listeners get both at once)."""
        record.status.state = state
        self._metrics.service_state(record.spec.name, state.value)
        self._tell(record)

    def _tell(self, record: _Supervision) -> None:
        status = record.status
        if record.told == (status.state, status.reason):
            return
        record.told = (status.state, status.reason)
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                log.exception("service status listener failed", service=status.name)

    def _fail(self, record: _Supervision, reason: str) -> None:
        record.status.reason = reason
        self._set_state(record, ServiceState.FAILED)
        log.error(
            "service failed", service=record.spec.name, reason=reason, critical=record.spec.critical
        )
        if record.spec.critical:
            self._on_fatal(f"critical service {record.spec.name!r} failed: {reason}")

    # -- shutdown -------------------------------------------------------------------

    async def stop(self, deadline: float, cancel_grace: float) -> StopReport:
        """Ask every service to stop, cancel those still running at their `stop_timeout` or
        at `deadline` (monotonic), then wait `cancel_grace` more; reports which services
        had to be cancelled and which would not die even then."""
        clock = self._clock
        began = clock.monotonic()
        live = [r for r in self._services.values() if not r.done]
        for record in live:
            if record.status.state is not ServiceState.FAILED:
                self._set_state(record, ServiceState.STOPPING)
            record.request_stop()
        report = StopReport()
        # A finished service costs no wait (a wait yields even when woken already).
        for record in live:
            if record.done:
                continue
            limit = min(began + record.spec.stop_timeout, deadline)
            if not await clock.sleep_until(limit, record.finished):
                log.warning(
                    "service did not stop in time; cancelling",
                    service=record.spec.name,
                    stop_timeout=record.spec.stop_timeout,
                )
                report.cancelled.append(record.spec.name)
                self._tasks.cancel(f"supervise:{record.spec.name}")
        grace_end = clock.monotonic() + cancel_grace
        for record in live:
            if not record.done and not await clock.sleep_until(grace_end, record.finished):
                report.abandoned.append(record.spec.name)
        if report.abandoned:
            log.error("services would not die; abandoning them", services=report.abandoned)
        return report


@dataclass
class StopReport:
    """What :meth:`Supervisor.stop` had to force: a clean stop forces nothing."""

    cancelled: list[str] = field(default_factory=list)
    """Services still running at their stop_timeout (or the deadline), cancelled then."""
    abandoned: list[str] = field(default_factory=list)
    """Services whose task outlived its cancellation and the grace after it."""


CLEANUP_AFTER_CANCEL = 0.5
"""What on_stop and the lease release get once the service was cancelled, in seconds:
the runtime's cancel grace is short and resources close right after it."""


def _cleanup_budget(normal: float) -> float:
    task = asyncio.current_task()
    return CLEANUP_AFTER_CANCEL if task is not None and task.cancelling() else normal


def _never_built() -> Any:
    raise RuntimeError("a disabled service is never built")
