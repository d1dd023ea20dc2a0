"""Serve hub channels over a WebSocket: auth before accept, a small JSON protocol, limits,
and close codes that tell the client why.

Client to server::

    {"type": "subscribe", "channel": "markets", "last_id": "3f2a9c1e:41"}   # last_id optional
    {"type": "unsubscribe", "channel": "markets"}
    {"type": "ping"}

Server to client: ``message`` (channel, id, data), ``resync`` (the gap is older than the
history: reload, then go on from ``latest``), ``subscribed``, ``unsubscribed``, ``pong`` and
``error`` (a refused request; the socket stays open).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect

from mainspring.realtime.hub import Hub, Subscriber, check_channel
from mainspring.realtime.message import MessageId, Notice
from mainspring.realtime.outbox import Closed, CloseReason

log = structlog.get_logger("mainspring.realtime")

POLICY_VIOLATION = 1008
UNSUPPORTED_DATA = 1003
MESSAGE_TOO_BIG = 1009
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

CLOSE_TIMEOUT = 2.0
"""How long a close frame may wait behind a client that does not read."""


@dataclass(frozen=True, slots=True)
class SocketLimits:
    max_message_bytes: int = 4096
    messages_per_second: float = 10.0
    burst: int = 30
    max_channels: int = 32


Authorize = Callable[[WebSocket], Awaitable[bool]]
Allow = Callable[[str], bool]


async def serve_channels(
    websocket: WebSocket,
    hub: Hub,
    *,
    authorize: Authorize | None = None,
    allow: Allow,
    limits: SocketLimits = SocketLimits(),
) -> None:
    """Run one client's session until it leaves, breaks the rules, or the server stops.

    `authorize` runs before the handshake is accepted: refusing answers HTTP 403, so the
    client's reconnect backoff is not reset by an accepted-then-closed socket. `allow` says
    which channels this socket may subscribe to; it has no default, because a channel
    costs memory here and keys in Redis, and clients can make up names.
    """
    if authorize is not None and not await authorize(websocket):
        await websocket.close(code=POLICY_VIOLATION)
        return
    await websocket.accept()
    async with hub.connect() as subscriber:
        await _Session(websocket, subscriber, allow, limits).run()


class _Violation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Session:
    __slots__ = (
        "_refilled",
        "_sending",
        "_tokens",
        "_writer",
        "allow",
        "limits",
        "outbox",
        "subscriber",
        "violation",
        "websocket",
    )

    def __init__(
        self, websocket: WebSocket, subscriber: Subscriber, allow: Allow, limits: SocketLimits
    ) -> None:
        self.websocket = websocket
        self.subscriber = subscriber
        self.outbox = subscriber.outbox
        self.allow = allow
        self.limits = limits
        self.violation: _Violation | None = None
        self._writer: asyncio.Task[Any] | None = None
        self._sending = False
        self._tokens = float(limits.burst)
        self._refilled = asyncio.get_running_loop().time()

    async def run(self) -> None:
        """The writer runs in this task; the reader in one child task."""
        self._writer = asyncio.current_task()
        self.outbox.on_close = self._interrupt_send
        async with asyncio.TaskGroup() as group:
            reader = group.create_task(self._read())
            reason = await self._write()
            reader.cancel()
        await self._close(reason)

    def _interrupt_send(self, reason: CloseReason) -> None:
        # A client that stopped reading leaves the writer blocked in a send; free it.
        if self._sending and self._writer is not None and reason is not CloseReason.CLIENT_GONE:
            self._writer.cancel()

    async def _write(self) -> CloseReason:
        try:
            while True:
                items = await self.outbox.get()
                self._sending = True
                for item in items:
                    await self.websocket.send_text(item.frame)
                self._sending = False
        except Closed as closed:
            return closed.reason
        except (WebSocketDisconnect, OSError, RuntimeError):
            self.outbox.close(CloseReason.CLIENT_GONE)
            return CloseReason.CLIENT_GONE
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.outbox.closed is None or task is None or task.cancelling() != 1:
                raise
            task.uncancel()
            return self.outbox.closed

    async def _close(self, reason: CloseReason) -> None:
        if reason is CloseReason.CLIENT_GONE:
            return
        if reason is CloseReason.PROTOCOL and self.violation is not None:
            code, text = self.violation.code, self.violation.reason
        elif reason is CloseReason.SLOW:
            code, text = TRY_AGAIN_LATER, "too slow: resume from your last id"
        else:
            code, text = SERVICE_RESTART, "server restarting"
        with suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.websocket.close(code=code, reason=text)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(message)
        except _Violation as violation:
            self.violation = violation
            log.info(
                "websocket closed for a violation", code=violation.code, reason=violation.reason
            )
            self.outbox.close(CloseReason.PROTOCOL)
            return
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass
        self.outbox.close(CloseReason.CLIENT_GONE)

    async def _handle(self, message: Any) -> None:
        text = message.get("text")
        if text is None:
            raise _Violation(UNSUPPORTED_DATA, "send JSON text frames")
        limit = self.limits.max_message_bytes
        # Bytes, not characters; counting characters first spares encoding a huge message.
        if len(text) > limit or len(text.encode()) > limit:
            raise _Violation(MESSAGE_TOO_BIG, f"messages are limited to {limit} bytes")
        if not self._take_token():
            raise _Violation(POLICY_VIOLATION, "too many messages")
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise _Violation(POLICY_VIOLATION, "messages must be JSON objects") from None
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == "ping":
            self.outbox.put_control(Notice.of(type="pong"))
        elif kind == "subscribe":
            await self._subscribe(request)
        elif kind == "unsubscribe":
            channel = request.get("channel")
            if isinstance(channel, str):
                await self.subscriber.unsubscribe(channel)
            self.outbox.put_control(Notice.of(type="unsubscribed", channel=channel))
        else:
            raise _Violation(POLICY_VIOLATION, "type must be subscribe, unsubscribe or ping")

    async def _subscribe(self, request: dict[str, Any]) -> None:
        channel = request.get("channel")
        if not isinstance(channel, str):
            self._refuse("invalid_request", None, "channel must be a string")
            return
        try:
            check_channel(channel)
            raw_id = request.get("last_id")
            last_id = None if raw_id is None else MessageId.parse(str(raw_id))
        except ValueError as error:
            self._refuse("invalid_request", channel, str(error))
            return
        if not self.allow(channel):
            self._refuse("forbidden_channel", channel, "not allowed on this socket")
        elif channel not in self.subscriber.channels and (
            len(self.subscriber.channels) >= self.limits.max_channels
        ):
            limit = self.limits.max_channels
            self._refuse("too_many_channels", channel, f"at most {limit} channels")
        else:
            ack = Notice.of(type="subscribed", channel=channel)
            try:
                await self.subscriber.subscribe(channel, last_id, ack=ack)
            except Exception as error:  # the backend is unreachable: the client may retry
                log.warning("subscribe failed", channel=channel, error=repr(error))
                self._refuse("unavailable", channel, "cannot subscribe now; try again")

    def _refuse(self, error: str, channel: str | None, detail: str) -> None:
        self.outbox.put_control(
            Notice.of(type="error", error=error, channel=channel, detail=detail)
        )

    def _take_token(self) -> bool:
        now = asyncio.get_running_loop().time()
        rate, burst = self.limits.messages_per_second, self.limits.burst
        self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
