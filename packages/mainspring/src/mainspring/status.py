"""What /ready and /debug/status report about a runtime."""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from mainspring.services.state import ServiceState, iso

if TYPE_CHECKING:
    from mainspring.runtime import OpenedResource, Runtime

CHECK_TIMEOUT = 2.0
"""A resource check slower than this counts as failed, in seconds."""


def mainspring_version() -> str:
    try:
        return version("mainspring")
    except PackageNotFoundError:
        return "unknown"


async def _check(rt: Runtime, entry: OpenedResource) -> str:
    if entry.state != "open":
        return entry.error or entry.state
    try:
        async with rt.clock.timeout(CHECK_TIMEOUT):
            await entry.resource.check()
    except TimeoutError:
        return f"check timed out after {CHECK_TIMEOUT:g}s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


async def readiness(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    """Ready once every service finished its first start and critical resources pass
    their checks; degraded (still ready) when a service failed or an optional resource
    is down; not ready while stopping."""
    if rt.stopping:
        return False, {"status": "stopping"}
    entries = rt.resources
    results = await asyncio.gather(*(_check(rt, entry) for entry in entries))
    checks = {entry.name: result for entry, result in zip(entries, results, strict=True)}
    critical_down = [
        e.name for e, r in zip(entries, results, strict=True) if e.critical and r != "ok"
    ]
    starting = rt.supervisor.still_starting()
    failed = [s.name for s in rt.supervisor.statuses() if s.state is ServiceState.FAILED]
    if critical_down or starting:
        state = "starting" if starting and not critical_down else "unavailable"
        ready = False
    else:
        degraded = failed or any(result != "ok" for result in results)
        state = "degraded" if degraded else "ready"
        ready = True
    body: dict[str, Any] = {"status": state, "checks": checks}
    if starting:
        body["starting"] = starting
    if failed:
        body["failed_services"] = failed
    return ready, body


async def process_status(rt: Runtime) -> dict[str, Any]:
    ready, details = await readiness(rt)
    app = rt.app
    wall_offset = rt.clock.time() - rt.clock.monotonic()
    return {
        "pid": os.getpid(),
        "version": mainspring_version(),
        "app": {
            "name": rt.namespace,
            "version": app.version if app else None,
            "lease_namespace": rt.lease_namespace,
        },
        "started_at": iso(rt.started_at),
        "uptime": round(rt.clock.time() - rt.started_at, 3),
        "ready": {"ready": ready, **details},
        "fatal": rt.fatal,
        "resources": [
            {"name": e.name, "state": e.state, "critical": e.critical, "error": e.error}
            for e in rt.resources
        ],
        "services": [status.to_dict(wall_offset) for status in rt.supervisor.statuses()],
    }
