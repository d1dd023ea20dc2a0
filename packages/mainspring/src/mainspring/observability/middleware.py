"""`RequestContextMiddleware`: a request id on every request, response and log line.

Pure ASGI, so the app runs in the same task and context as the middleware:
contextvars bound here reach every handler, dependency and log call, which
Starlette's base HTTP middleware class would not guarantee. Install it outermost
(wrap the app or `add_middleware` it last) so even a crash gets an id, a JSON 500
and one log line; a request that the server cuts off at its graceful-shutdown timeout
before it answered gets a JSON 503 instead of the server's plain-text 500.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from json import dumps
from time import perf_counter
from typing import Any, Protocol

import structlog
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from mainspring import lifecycle
from mainspring.observability.access import access_log
from mainspring.observability.context import (
    SUBJECT_KEY,
    Binding,
    new_request_id,
    subject_of,
)
from mainspring.observability.context import valid_request_id as is_valid_request_id

log = structlog.get_logger("mainspring.request")

UNMATCHED = "<unmatched>"
HEADER = b"x-request-id"
_FORWARDED_FOR = b"x-forwarded-for"
_CLIENT_CLOSED = 499
"""Status logged when the request was cancelled before any response (nginx's convention)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RequestMetrics(Protocol):
    """What the middleware reports to; `mainspring.observability.metrics.HttpMetrics` is one."""

    def request_started(self, method: str) -> None: ...

    def request_finished(self, method: str, route: str, status: int, duration_s: float) -> None: ...


class RequestContextMiddleware:
    """Correlation ids, one access line per request or WebSocket session, and crash safety.

    `trusted_proxies` are IPs or CIDRs of reverse proxies whose ``X-Forwarded-For``
    names the real client; from anyone else that header is ignored.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: RequestMetrics | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.trusted_proxies: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP is handled here rather than in a method of its own: it is every request's
        # path, and each call and allocation on it shows in the CPU time per request.
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request_id, client = self._read_headers(scope)
        method: str = scope["method"]
        id_header = (HEADER, request_id.encode("ascii"))
        status = 0
        sent_bytes = 0
        error: str | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent_bytes
            if message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.request_started(method)
        activity = {"request_id": request_id, "method": method, "path": scope["path"]}
        binding = Binding(request_id, activity)
        start = perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:
            if status or not lifecycle.is_draining():
                raise
            # The server gave up on this request at its graceful-shutdown timeout. Nothing
            # was sent yet, so say so and end the request here: the task has nothing left
            # to unwind, and re-raising would only make the server log a traceback.
            error = "CancelledError"
            with suppress(OSError):
                await _send_error(send_with_id, request_id, SHUTTING_DOWN)
        except Exception as exc:
            error = type(exc).__name__
            log.exception("unhandled exception", method=method, route=route_template(scope))
            if not status:
                with suppress(OSError):  # the client may be gone already
                    await _send_error(send_with_id, request_id, INTERNAL_ERROR)
        finally:
            duration = perf_counter() - start
            route = route_template(scope)
            status = status or _CLIENT_CLOSED
            if metrics is not None:
                metrics.request_finished(method, route, status, duration)
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(duration * 1000, 3),
                "bytes": sent_bytes,
                "client": client,
                "request_id": request_id,
            }
            if error is not None:
                fields["error"] = error
            _write_access("http request", fields, scope)
            _unbind(scope, binding)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id, client = self._read_headers(scope)
        id_header = (HEADER, request_id.encode("ascii"))
        messages_in = 0
        messages_out = 0
        close_code: int | None = None

        async def receive_counted() -> Message:
            nonlocal messages_in, close_code
            message = await receive()
            if message["type"] == "websocket.receive":
                messages_in += 1
            elif message["type"] == "websocket.disconnect" and close_code is None:
                close_code = message.get("code", 1005)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal messages_out, close_code
            if message["type"] == "websocket.send":
                messages_out += 1
            elif message["type"] == "websocket.accept":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER]
                headers.append(id_header)
                message = {**message, "headers": headers}
            elif message["type"] == "websocket.close" and close_code is None:
                close_code = message.get("code", 1000)
            await send(message)

        binding = Binding(request_id, {"request_id": request_id, "websocket": scope["path"]})
        start = perf_counter()
        try:
            await self.app(scope, receive_counted, send_with_id)
        except WebSocketDisconnect as exc:
            close_code = exc.code if close_code is None else close_code
        except Exception:
            log.exception("unhandled exception", route=route_template(scope))
            if close_code is None:
                with suppress(OSError):  # the client may be gone already
                    await send_with_id({"type": "websocket.close", "code": 1011})
        finally:
            fields: dict[str, Any] = {
                "route": route_template(scope),
                "close_code": close_code,
                "duration_ms": round((perf_counter() - start) * 1000, 3),
                "messages_in": messages_in,
                "messages_out": messages_out,
                "client": client,
                "request_id": request_id,
            }
            _write_access("websocket session", fields, scope)
            _unbind(scope, binding)

    def _read_headers(self, scope: Scope) -> tuple[str, str | None]:
        """The request id to use and the client address, in one pass over the headers."""
        incoming: bytes | None = None
        forwarded: list[bytes] = []
        for name, value in scope["headers"]:
            if name == HEADER:
                incoming = value
            elif name == _FORWARDED_FOR:
                forwarded.append(value)
        request_id = None
        if incoming is not None:
            candidate = incoming.decode("latin-1")
            if is_valid_request_id(candidate):
                request_id = candidate
        peer = scope.get("client")
        host: str | None = peer[0] if peer else None
        if forwarded and host and self._trusted(host):
            host = self._forwarded_client(forwarded, host)
        return request_id or new_request_id(), host

    def _forwarded_client(self, forwarded: list[bytes], host: str) -> str:
        """The client named by ``X-Forwarded-For`` sent by `host`, a trusted proxy."""
        # The right-most address that is not one of our proxies is the real client.
        hops = [hop.strip() for value in forwarded for hop in value.decode("latin-1").split(",")]
        for hop in reversed(hops):
            if hop and not self._trusted(hop):
                return hop
        return hops[0] or host

    def _trusted(self, host: str) -> bool:
        if not self.trusted_proxies:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/items/{item_id}``), never the raw path.

    Routes inside a `Mount` get the mount's prefix; with no match it is `UNMATCHED`,
    so a scan of random URLs cannot blow up log or metric cardinality.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    if "app_root_path" not in scope:
        return path
    # Inside a mount, root_path has grown by the prefix the mounts matched.
    prefix: str = scope.get("root_path", "")[len(scope["app_root_path"]) :]
    return prefix if isinstance(route, Mount) else prefix + path


def _write_access(event: str, fields: dict[str, Any], scope: Scope) -> None:
    sink = access_log()
    if sink is None:
        return
    subject = subject_of(scope)
    if subject is not None:
        fields["subject"] = subject
    sink.write(event, fields)


def _unbind(scope: Scope, binding: Binding) -> None:
    binding.reset()
    state = scope.get("state")
    if state is not None and SUBJECT_KEY in state:
        structlog.contextvars.unbind_contextvars("subject")


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    error: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


INTERNAL_ERROR = ErrorAnswer(500, "internal_error")
SHUTTING_DOWN = ErrorAnswer(
    503, "shutting_down", ((b"retry-after", b"1"), (b"connection", b"close"))
)
"""Another instance can serve a retry at once; this one is closing its connections."""


async def _send_error(send: Send, request_id: str, answer: ErrorAnswer) -> None:
    body = dumps({"error": answer.error, "request_id": request_id}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *answer.headers,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
