"""Typed FastAPI dependencies that reach the runtime's resources and services.

Each dependency is one cached callable per (kind, name), so tests can replace it
with ``app.dependency_overrides[use(Database)] = lambda: fake_db``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from mainspring.runtime import Runtime

T = TypeVar("T")

RUNTIME_STATE_KEY = "mainspring_runtime"


class ServiceUnavailable(LookupError):
    """The service exists but has no running instance in this process (disabled, standby...)."""


async def get_runtime(conn: HTTPConnection) -> Runtime:
    """Async, like every dependency here: a plain `def` would cost a thread-pool hop."""
    runtime = getattr(conn.app.state, RUNTIME_STATE_KEY, None)
    if runtime is None:
        raise RuntimeError(
            "no mainspring Runtime is running for this app; "
            "open one with `async with Runtime(app) as rt:` in the app's lifespan"
        )
    return cast("Runtime", runtime)


RuntimeDep = Annotated["Runtime", Depends(get_runtime)]


@functools.cache
def use(kind: type[T], name: str | None = None) -> Callable[..., Awaitable[T]]:
    """A dependency that returns the runtime's resource or service of type `kind`.

    A service that is not running in this process answers 503, not 500.
    """

    async def dependency(rt: RuntimeDep) -> Any:
        try:
            return rt.get(kind, name)
        except ServiceUnavailable as exc:
            raise HTTPException(503, str(exc)) from None

    dependency.__name__ = f"use_{kind.__name__}" + (f"_{name}" if name else "")
    return dependency
