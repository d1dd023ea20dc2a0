"""A bad setting found while the app starts ends like one found at import: one line
naming the variable and exit code 2, never a traceback and exit 3.

Apps often load their settings inside the lifespan; the server only sees the lifespan
fail. `ConfigErrorGuard` sits around the app, keeps the traceback out of the server's
log when the failure is a `ConfigError`, and remembers it for the runner to report.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mainspring.settings import ConfigError


class ConfigErrorGuard:
    """Pure ASGI wrapper; only the lifespan scope is looked at.

    A request is handed the app's own coroutine, with no frame of the guard's around it:
    `__call__` is a plain function, so servers must be told the app speaks ASGI 3
    (`interface="asgi3"`), which they would otherwise guess from an `async def`."""

    def __init__(self, app: ASGIApp) -> None:
        """`app`: any ASGI 3 app, as the loader found it."""
        self.app = app
        self.error: ConfigError | None = None
        """The ConfigError that stopped the app's startup, if one did."""

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)
        return self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        failure: Message | None = None

        async def relay(message: Message) -> None:
            # The failure (with its traceback text) waits until we know what failed.
            nonlocal started, failure
            if message["type"] == "lifespan.startup.failed":
                failure = message
                return
            started = started or message["type"] == "lifespan.startup.complete"
            await send(message)

        try:
            await self.app(scope, receive, relay)
        except ConfigError as exc:
            if not started:
                self.error = exc
                failure = {"type": "lifespan.startup.failed", "message": ""}
            raise
        finally:
            if failure is not None:
                await send(failure)
