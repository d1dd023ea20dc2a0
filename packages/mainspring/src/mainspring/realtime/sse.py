"""Server-Sent Events: a stream of an outbox's items, with resume, keepalives and a prompt end.

Why not FastAPI's ``EventSourceResponse``: it is a marker for generator endpoints, whose
items FastAPI serializes one by one, through two memory streams and a task group of two
tasks (producer and keepalive inserter), inside Starlette's ``StreamingResponse``, which
adds another task group to listen for the disconnect. That is four tasks per stream and a
serialization per event per client. Here an event is encoded once, at publish, for every
client (:attr:`Message.event`), and a stream costs one extra task: the writer runs in the
request's own task, and one small task waits for ``http.disconnect``. (uvicorn's HTTP
protocols speak ASGI 2.3, where ``send`` to a closed connection returns silently instead
of raising ``OSError``, so without that watcher an idle stream would only notice a gone
client at the next keepalive, if ever.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mainspring.clock import Clock, SystemClock
from mainspring.realtime.hub import Hub, check_channel
from mainspring.realtime.message import MessageId
from mainspring.realtime.outbox import Closed, CloseReason, Outbox

KEEPALIVE = b": keepalive\n\n"
END = b'event: end\ndata: {"type":"end"}\n\n'
"""The producer finished: the client should not reconnect."""
CLOSE_TIMEOUT = 2.0
"""How long the end of a stream may wait behind a client that does not read."""

SYSTEM_CLOCK = SystemClock()


class EventStream(Response):
    """A ``text/event-stream`` response that writes each item's cached ``.event`` bytes.

    `subscription` is entered before the response starts (a failing subscribe is a plain
    error response) and yields the outbox to stream; it is exited when the stream ends:
    after an ``end`` event when the producer is DONE; with just the end of the body on
    shutdown or for a slow client, so the browser reconnects after ``retry`` ms with its
    Last-Event-ID and resumes; at once when the client is gone.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        subscription: AbstractAsyncContextManager[Outbox],
        *,
        keepalive: float = 15.0,
        retry_ms: int = 3000,
        clock: Clock = SYSTEM_CLOCK,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.subscription = subscription
        self.keepalive = keepalive
        self.retry_ms = retry_ms
        self.clock = clock
        self.status_code = 200
        self.background = None
        # no-cache: proxies must not hold events back; X-Accel-Buffering: nor must nginx.
        self.init_headers(
            {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        )
        self._task: asyncio.Task[Any] | None = None
        self._sending = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.subscription as outbox:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await _body(send, f"retry: {self.retry_ms}\n\n".encode())
            # A bare task rather than a TaskGroup: a few hundred bytes less per stream, and
            # it needs no awaiting, it only ever closes the outbox.
            watcher = asyncio.ensure_future(_watch_disconnect(receive, outbox))
            try:
                reason = await self._pump(outbox, send)
            finally:
                watcher.cancel()
        await self._finish(reason, send)

    def _interrupt(self, reason: CloseReason) -> None:
        # A client that stopped reading leaves the writer blocked in send; free it to end.
        if self._sending and self._task is not None and reason not in _KEEP_SENDING:
            self._task.cancel()

    async def _pump(self, outbox: Outbox, send: Send) -> CloseReason:
        """Write what the outbox holds until it closes; a keepalive after each idle spell."""
        task = self._task = asyncio.current_task()
        outbox.on_close = self._interrupt
        try:
            while True:
                try:
                    async with self.clock.timeout(self.keepalive):
                        items = await outbox.get()
                    chunk = b"".join([item.event for item in items])
                except TimeoutError:
                    chunk = KEEPALIVE
                self._sending = True
                await _body(send, chunk)
                self._sending = False
        except Closed as closed:
            return closed.reason
        except OSError:  # ASGI 2.4 servers raise it when sending to a closed connection.
            outbox.close(CloseReason.CLIENT_GONE)
            return CloseReason.CLIENT_GONE
        except asyncio.CancelledError:
            if outbox.closed is None or task is None or task.cancelling() != 1:
                raise
            task.uncancel()
            return outbox.closed

    async def _finish(self, reason: CloseReason, send: Send) -> None:
        if reason is CloseReason.CLIENT_GONE:
            return
        last = END if reason is CloseReason.DONE else f": {reason.value}\n\n".encode()
        with suppress(TimeoutError, OSError):
            async with self.clock.timeout(CLOSE_TIMEOUT):
                await send({"type": "http.response.body", "body": last, "more_body": False})


_KEEP_SENDING = (CloseReason.CLIENT_GONE, CloseReason.DONE)
"""Closes that must not interrupt a send: a gone client unblocks it anyway, and DONE
still delivers what is queued."""


async def _body(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _watch_disconnect(receive: Receive, outbox: Outbox) -> None:
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a connection that cannot be read from is gone
        pass
    outbox.close(CloseReason.CLIENT_GONE)


def resume_from(request: Request, parse: Callable[[str], MessageId]) -> MessageId | None:
    """The id to resume after: the ``Last-Event-ID`` header a reconnecting EventSource
    sends, else a ``last_id`` query parameter (for the first connection). 400 if invalid."""
    for name, value in (
        ("Last-Event-ID", request.headers.get("last-event-id")),
        ("last_id", request.query_params.get("last_id")),
    ):
        if value:
            try:
                return parse(value)
            except ValueError as error:
                raise HTTPException(400, f"invalid {name}: {error}") from None
    return None


def channel_stream(
    request: Request,
    hub: Hub,
    channel: str,
    *,
    keepalive: float = 15.0,
    retry_ms: int = 3000,
    clock: Clock = SYSTEM_CLOCK,
) -> EventStream:
    """Stream a hub channel; a reconnecting client gets exactly what it missed, or a
    ``resync`` event when the gap is older than the channel's history."""
    try:
        check_channel(channel)
    except ValueError as error:
        raise HTTPException(400, str(error)) from None
    subscription = _ChannelSubscription(hub, channel, resume_from(request, MessageId.parse))
    return EventStream(subscription, keepalive=keepalive, retry_ms=retry_ms, clock=clock)


class _ChannelSubscription:
    """A class, not an ``@asynccontextmanager``: lighter by a generator per stream."""

    __slots__ = ("channel", "last_id", "subscriber")

    def __init__(self, hub: Hub, channel: str, last_id: MessageId | None) -> None:
        self.subscriber = hub.connect()
        self.channel = channel
        self.last_id = last_id

    async def __aenter__(self) -> Outbox:
        await self.subscriber.__aenter__()
        try:
            await self.subscriber.subscribe(self.channel, self.last_id)
        except Exception as error:  # the backend is unreachable: the client may retry
            await self.subscriber.__aexit__(type(error), error, error.__traceback__)
            raise HTTPException(
                503, "cannot subscribe now; try again", headers={"Retry-After": "5"}
            ) from error
        except BaseException as error:
            await self.subscriber.__aexit__(type(error), error, error.__traceback__)
            raise
        return self.subscriber.outbox

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.subscriber.__aexit__(*exc_info)
