"""`Runtime`: the one owner of everything long-lived in a process.

Used inside the app's lifespan, it opens resources, supervises services, serves
health and status, and on the way out stops services and closes resources
within one bounded deadline.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

import structlog
from fastapi import FastAPI
from pydantic_settings import BaseSettings

from mainspring import lifecycle
from mainspring.clock import Clock, SystemClock
from mainspring.dependencies import RUNTIME_STATE_KEY, ServiceUnavailable
from mainspring.health import router as health_router
from mainspring.leases import LeaseBackend, holder_id, lease_backend_from_url, lease_namespace
from mainspring.observability.metrics import runtime_metrics
from mainspring.observability.metrics_router import metrics_router
from mainspring.observability.tracing import Tracing, setup_tracing
from mainspring.offline_docs import serve_docs_offline
from mainspring.resources.base import Resource
from mainspring.services.base import Service
from mainspring.services.policy import RestartMode, RestartPolicy
from mainspring.services.state import ServiceStatus
from mainspring.services.supervisor import ServiceSpec, StatusListener, Supervisor
from mainspring.services.tasks import TaskSet
from mainspring.settings import MainspringSettings, load_settings, variable_name
from mainspring.status import process_status, readiness

log = structlog.get_logger("mainspring.runtime")

T = TypeVar("T")
R = TypeVar("R", bound=Resource)
ResourceState = Literal["open", "failed", "closed"]
CloseOutcome = Literal["closed", "failed", "timed out"]

DEFAULT_FASTAPI_TITLE = "FastAPI"
"""Every app that did not choose a title has this one: no namespace for leases."""
CANCEL_GRACE = 1.0
"""After cancelling the services that ignored stop, how long to wait for them to end."""
MIN_CLOSE_TIME = 0.25
"""Each resource gets at least this long to close, even when services used up the deadline."""


@dataclass(frozen=True)
class Gate:
    """An `enabled=` value that knows why it is off, e.g. which setting is missing."""

    value: object
    reason: str

    def __bool__(self) -> bool:
        return bool(self.value)


def setting(settings: BaseSettings, field: str) -> Gate:
    """Gate a service on a setting; when it is falsy the reason names the variable that
    sets it (an empty variable counts as unset)."""
    return Gate(getattr(settings, field), f"{variable_name(type(settings), field)} is not set")


@dataclass
class OpenedResource:
    """A resource as the runtime holds it: how it is named, whether it opened."""

    name: str
    resource: Resource
    critical: bool
    close_timeout: float
    state: ResourceState = "open"
    error: str | None = None


class Runtime:
    """The lifespan owner. ``async with Runtime(app) as rt:`` inside the app's lifespan."""

    def __init__(
        self,
        app: FastAPI | None = None,
        settings: MainspringSettings | None = None,
        *,
        clock: Clock | None = None,
        lease_backend: LeaseBackend | None = None,
        on_fatal: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or load_settings(MainspringSettings)
        self.clock: Clock = clock or SystemClock()
        self.namespace = self.settings.app_name or (app.title if app else "mainspring")
        """The app's name in logs, traces and status."""
        self.lease_namespace = lease_namespace(self.namespace, self.settings)
        """What keeps this deployment's singleton leases apart from any other's."""
        self.started_at = self.clock.time()
        self._lease_backend = lease_backend
        self._owns_lease_backend = lease_backend is None
        self._on_fatal = on_fatal or _exit_process
        self._resources: list[OpenedResource] = []
        self._tasks = TaskSet()
        self._stopping = False
        self.fatal: str | None = None
        self.supervisor = Supervisor(
            clock=self.clock,
            tasks=self._tasks,
            leases=self._leases,
            holder_id=holder_id(self.namespace, self.lease_namespace),
            on_fatal=self._fatal,
            rng=rng or random.Random(),
            metrics=runtime_metrics(),
        )
        self._tracing: Tracing | None = None

    # -- lifespan -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self.app is not None:
            setattr(self.app.state, RUNTIME_STATE_KEY, self)
            _mount_routers(self.app)
            self._tracing = setup_tracing(self.app, service_name=self.namespace)
        log.info("runtime starting", app=self.namespace, tracing=self._tracing is not None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    @property
    def stopping(self) -> bool:
        return self._stopping or lifecycle.is_draining()

    async def shutdown(self) -> None:
        """Stop services, then close the lease backend and resources, all by one deadline.

        Whatever had to be cancelled to meet it (a service past its stop_timeout, a close
        that timed out) is logged and noted in `lifecycle`, so the process exits non-zero.
        """
        if self._stopping:
            return
        self._stopping = True
        clock = self.clock
        began = clock.monotonic()
        deadline = began + self.settings.shutdown_timeout
        log.info("runtime stopping", deadline_s=self.settings.shutdown_timeout)
        cancel_grace = min(CANCEL_GRACE, self.settings.shutdown_timeout / 10)
        report = await self.supervisor.stop(deadline - cancel_grace, cancel_grace)
        forced = [f"service {name} was cancelled" for name in report.cancelled]
        if self._lease_backend is not None and self._owns_lease_backend:
            outcome = await self._close("lease backend", self._lease_backend.close, deadline, 5.0)
            if outcome == "timed out":
                forced.append("the lease backend's close timed out")
        for entry in reversed(self._resources):
            if entry.state == "open":
                outcome = await self._close(
                    entry.name, entry.resource.close, deadline, entry.close_timeout
                )
                entry.state = "closed" if outcome == "closed" else "failed"
                if outcome == "timed out":
                    forced.append(f"resource {entry.name}'s close timed out")
        if forced:
            lifecycle.note_forced_stop()
        log.info(
            "runtime stopped",
            duration_s=round(clock.monotonic() - began, 3),
            abandoned=report.abandoned or None,
            forced=forced or None,
        )

    async def _close(
        self, name: str, close: Callable[[], Any], deadline: float, limit: float
    ) -> CloseOutcome:
        budget = max(min(limit, deadline - self.clock.monotonic()), MIN_CLOSE_TIME)
        try:
            async with self.clock.timeout(budget):
                await close()
        except TimeoutError:
            log.error("close timed out", resource=name, timeout_s=round(budget, 3))
            return "timed out"
        except Exception:
            log.exception("close failed", resource=name)
            return "failed"
        return "closed"

    # -- resources ------------------------------------------------------------------

    async def open(
        self,
        resource: R,
        *,
        name: str | None = None,
        critical: bool = True,
        close_timeout: float = 5.0,
    ) -> R:
        """Open `resource` and close it at shutdown (reverse order of opening).

        A critical resource that fails to open fails startup; any other is
        reported as failed, readiness is degraded, and the app starts anyway.
        """
        entry = OpenedResource(name or resource.resource_name(), resource, critical, close_timeout)
        if any(other.name == entry.name for other in self._resources):
            raise ValueError(f"a resource named {entry.name!r} is already open; pass name=...")
        try:
            await resource.open()
        except Exception as exc:
            if critical:
                log.error("critical resource failed to open", resource=entry.name, error=str(exc))
                raise
            entry.state, entry.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning(
                "resource failed to open; continuing without it",
                resource=entry.name,
                error=entry.error,
            )
        self._resources.append(entry)
        log.info("resource opened", resource=entry.name, state=entry.state)
        if entry.state != "failed":
            for service in resource.services():
                self.supervise(service)
        return resource

    # -- services -------------------------------------------------------------------

    def supervise(
        self,
        service: Service | Callable[[], Service],
        *,
        name: str | None = None,
        enabled: object = True,
        reason: str | None = None,
        start_delay: float = 0.0,
        restart: RestartPolicy | RestartMode = "on-failure",
        singleton: bool = False,
        critical: bool = False,
        stop_timeout: float = 5.0,
    ) -> ServiceStatus:
        """Run `service` in the background under supervision.

        Pass an instance, or a class/factory so that every restart gets a fresh
        instance (and an exception in ``__init__`` counts as a crash). A falsy
        `enabled` disables the service with `reason` (a :func:`setting` gate
        names its env var for you).
        """
        service_name = name or _service_name(service)
        if not enabled:
            why = reason or (
                enabled.reason if isinstance(enabled, Gate) else f"disabled (enabled={enabled!r})"
            )
            return self.supervisor.disable(
                service_name,
                why,
                critical=critical,
                singleton=singleton,
                kind=_service_kind(service),
            )
        if singleton:
            if self.namespace == DEFAULT_FASTAPI_TITLE:
                raise ValueError(
                    f"singleton {service_name!r} needs a namespace for its lease that other apps "
                    "do not share: give the FastAPI app a title or set MAINSPRING_APP_NAME"
                )
            self._leases()
        factory: Callable[[], Service] = (
            (lambda: service) if isinstance(service, Service) else service
        )
        spec = ServiceSpec(
            name=service_name,
            factory=factory,
            policy=RestartPolicy.of(restart),
            start_delay=start_delay,
            singleton=singleton,
            critical=critical,
            stop_timeout=stop_timeout,
            kind=_service_kind(service),
        )
        return self.supervisor.start(spec)

    def on_service_change(self, listener: StatusListener) -> Callable[[], None]:
        """Call `listener(status)` whenever a service's state or reason changes (a service
        supervised later included); returns a function that removes it. The call is
        synchronous, on the event loop: copy what you need and hand any I/O to a queue."""
        return self.supervisor.on_change(listener)

    def _leases(self) -> LeaseBackend:
        if self._lease_backend is None:
            self._lease_backend = lease_backend_from_url(
                self.settings.lease_url, self.lease_namespace
            )
        return self._lease_backend

    def _fatal(self, message: str) -> None:
        self.fatal = message
        log.critical("stopping the process", reason=message)
        self._on_fatal(message)

    # -- lookups for handlers -------------------------------------------------------

    def get(self, kind: type[T], name: str | None = None) -> T:
        """The open resource or running service of type `kind` (and `name`, if given)."""
        if issubclass(kind, Service):
            return cast(T, self._service(kind, name))
        found = [
            e
            for e in self._resources
            if isinstance(e.resource, kind) and (name is None or e.name == name)
        ]
        if not found:
            raise LookupError(
                f"no {kind.__name__} resource{_named(name)} was opened with Runtime.open()"
            )
        if len(found) > 1:
            names = ", ".join(e.name for e in found)
            raise LookupError(
                f"several {kind.__name__} resources are open ({names}); ask for one by name"
            )
        return cast(T, found[0].resource)

    def _service(self, kind: type[Service], name: str | None) -> Service:
        """The running instance; ServiceUnavailable when it is supervised but not running
        here (disabled, standby, backoff), LookupError when no such service exists."""
        supervisor = self.supervisor
        states = {status.name: status.state.value for status in supervisor.statuses()}

        def matches(candidate: str) -> bool:
            known = supervisor.kind(candidate)
            if known is None:  # a factory not built yet: only an explicit name can match
                return candidate == name
            return issubclass(known, kind) and (name is None or candidate == name)

        candidates = [candidate for candidate in states if matches(candidate)]
        for candidate in candidates:
            instance = supervisor.instance(candidate)
            if isinstance(instance, kind):
                return instance
        if candidates:
            first = candidates[0]
            raise ServiceUnavailable(f"service {first!r} is not running here ({states[first]})")
        raise LookupError(f"no {kind.__name__} service{_named(name)} is supervised")

    # -- visibility -----------------------------------------------------------------

    @property
    def resources(self) -> tuple[OpenedResource, ...]:
        return tuple(self._resources)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details): what /ready answers."""
        return await readiness(self)

    async def status(self) -> dict[str, Any]:
        """Everything /debug/status shows."""
        return await process_status(self)


def _service_kind(service: object) -> type[Service] | None:
    if isinstance(service, Service):
        return type(service)
    if isinstance(service, type) and issubclass(service, Service):
        return service
    return None


def _service_name(service: object) -> str:
    kind = _service_kind(service)
    if kind is not None:
        return kind.default_name()
    name = getattr(service, "__name__", None)
    if not isinstance(name, str) or name == "<lambda>":
        raise ValueError("name the service: rt.supervise(factory, name=...)")
    return name


def _named(name: str | None) -> str:
    return f" named {name!r}" if name else ""


def _mount_routers(app: FastAPI) -> None:
    if not getattr(app.state, "mainspring_health_mounted", False):
        app.include_router(health_router)
        app.include_router(metrics_router)
        serve_docs_offline(app)
        app.state.mainspring_health_mounted = True


def _exit_process(_message: str) -> None:
    lifecycle.request_exit(lifecycle.EXIT_CRITICAL_FAILURE)
