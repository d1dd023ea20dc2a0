"""`BodyLimitMiddleware`: a request body larger than the limit is refused with a JSON 413
while it is read, before anything parses it.

Pure ASGI: it wraps ``receive`` and ``send``. The limit is looked up on the first read,
after routing, so one endpoint can have its own (`body_limit`); a declared
``Content-Length`` over the limit is refused before a byte is read, and a chunked body as
soon as it grows past it. A route that never reads its body is never refused.

An error answered before the body was read to its end (this 413, or a 401 from a route
that checks its caller first) closes the connection: otherwise the server would go on
reading, and throwing away, whatever the client still sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mainspring.observability.errors import error_response

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""1 MiB, nginx's default ``client_max_body_size``: plenty for JSON APIs."""
_LIMIT_ATTRIBUTE = "__mainspring_max_body_size__"
_CONTENT_LENGTH = b"content-length"
_TRANSFER_ENCODING = b"transfer-encoding"
_CONNECTION = b"connection"

EndpointT = TypeVar("EndpointT", bound=Callable[..., object])


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI lets an `HTTPException` through to the app's
    handler, which answers it as JSON like any other."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


def body_limit(max_body_size: int) -> Callable[[EndpointT], EndpointT]:
    """Give one endpoint its own limit, under its route decorator::

    @router.post("/uploads")
    @body_limit(50 * 1024 * 1024)
    async def upload(request: Request) -> ...
    """
    if max_body_size < 0:
        raise ValueError("max_body_size must be 0 or more")

    def mark(endpoint: EndpointT) -> EndpointT:
        setattr(endpoint, _LIMIT_ATTRIBUTE, max_body_size)
        return endpoint

    return mark


class BodyLimitMiddleware:
    """Refuses HTTP request bodies over `max_body_size` bytes (or the endpoint's own limit)."""

    def __init__(self, app: ASGIApp, *, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        if max_body_size < 0:
            raise ValueError("max_body_size must be 0 or more")
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = -1  # known at the first read, once routing has chosen the endpoint
        received = 0
        read_to_end = False
        started = False

        async def limited_receive() -> Message:
            nonlocal limit, received, read_to_end
            if limit < 0:
                limit = getattr(scope.get("endpoint"), _LIMIT_ATTRIBUTE, self.max_body_size)
                declared = _content_length(scope)
                if declared is not None and declared > limit:
                    raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                read_to_end = not message.get("more_body", False)
            return message

        async def send_closing_on_refusal(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400 and not read_to_end and _has_body(scope):
                    message = _closing(message)
            await send(message)

        try:
            await self.app(scope, limited_receive, send_closing_on_refusal)
        except BodyTooLarge as exc:
            # Read outside FastAPI's handlers, e.g. by a middleware: answer it here.
            if started:
                raise
            await error_response(413, exc.detail)(scope, receive, send_closing_on_refusal)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == _TRANSFER_ENCODING or (name == _CONTENT_LENGTH and value != b"0"):
            return True
    return False


def _closing(start: Message) -> Message:
    headers = list(start.get("headers", ()))
    if not any(name.lower() == _CONNECTION for name, _ in headers):
        headers.append((_CONNECTION, b"close"))
    return {**start, "headers": headers}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == _CONTENT_LENGTH:
            try:
                return int(value)
            except ValueError:
                return None
    return None
