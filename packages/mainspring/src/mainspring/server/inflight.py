"""`InFlightLimit`: a worker serves at most N requests at once and sheds the rest with 503.

Past its capacity a worker only gets slower for everyone: requests queue on the event
loop and on the database pool until clients time out. Answering the extra ones at once
with 503 and ``Retry-After`` costs a counter and two messages, and lets a load balancer
or client retry elsewhere. Pure ASGI, so nothing is built for a shed request.
"""

from __future__ import annotations

from collections.abc import Collection
from json import dumps

from starlette.types import ASGIApp, Receive, Scope, Send

from mainspring.observability.context import current_request_id

NEVER_SHED = frozenset({"/health", "/ready", "/metrics"})
"""A busy worker is alive: refusing its probes would have it restarted or taken out of
rotation, moving its load onto the others; and an overload is when its metrics matter."""
RETRY_AFTER = b"1"


class InFlightLimit:
    """At most `limit` HTTP requests in this worker at once (WebSocket sessions are not
    counted; a streaming response counts until it ends)."""

    def __init__(self, app: ASGIApp, *, limit: int, exempt: Collection[str] = NEVER_SHED) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self._shed(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _shed(self, send: Send) -> None:
        body = dumps(
            {
                "error": "overloaded",
                "detail": f"this worker is serving its limit of {self.limit} requests; "
                "retry after a second",
                "request_id": current_request_id(),
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"retry-after", RETRY_AFTER),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
