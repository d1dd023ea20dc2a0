"""The config guard watches the lifespan only: a request reaches the app with no frame of
the guard's around it (the per-request cost that remains is one dict lookup)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from mainspring.server.config_guard import ConfigErrorGuard


class RecordingApp:
    """Returns, and keeps, the coroutine each call makes."""

    def __init__(self) -> None:
        self.calls: list[Coroutine[Any, Any, None]] = []

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        call = self._serve(scope, receive, send)
        self.calls.append(call)
        return call

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "seen", "scope": scope["type"]})


async def no_message() -> Message:
    raise AssertionError("not read")


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
async def test_a_request_gets_the_apps_own_coroutine(scope_type: str) -> None:
    app = RecordingApp()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    call = ConfigErrorGuard(app)({"type": scope_type}, no_message, send)

    assert call is app.calls[0]
    await call
    assert sent == [{"type": "seen", "scope": scope_type}]
