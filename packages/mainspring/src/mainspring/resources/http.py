"""`HttpClient`: one pooled `httpx.AsyncClient` shared by the whole process.

A client per call pays a TCP (and TLS) handshake per call; one shared client keeps
connections alive between calls and caps how many are open at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from mainspring.observability.context import current_request_id
from mainspring.resources.base import Resource


class HttpClient(Resource):
    """Use it directly: ``await http.client.get("https://...")``."""

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        name: str = "http",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        """`timeout` for reading, writing and waiting for a pooled connection."""
        self.limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
        )
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.transport = transport
        """Replaces the network, e.g. `httpx.MockTransport` in tests of the code that uses it."""
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(
                f"HttpClient {self.name!r} is not open; open it with `await runtime.open(http)`"
            )
        return self._client

    async def open(self) -> None:
        if self._client is not None:
            raise RuntimeError(f"HttpClient {self.name!r} is already open")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=self.timeout,
            limits=self.limits,
            transport=self.transport,
            event_hooks={"request": [forward_request_id]},
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def check(self) -> None:
        """Fails once the client is closed, by `close()` or by code that closed it directly."""
        if self.client.is_closed:
            raise RuntimeError(f"HttpClient {self.name!r} is closed")


async def forward_request_id(request: httpx.Request) -> None:
    """Carry the current request id to the service we call, unless the caller set one."""
    request_id = current_request_id()
    if request_id is not None and "x-request-id" not in request.headers:
        request.headers["X-Request-ID"] = request_id
