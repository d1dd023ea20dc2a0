"""HttpClient against a real HTTP/1.1 server on 127.0.0.1 that counts its connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from mainspring.resources import HttpClient


class CountingServer:
    """Keep-alive HTTP/1.1: ``/echo`` answers with the request's X-Echo header, ``/hang``
    never answers. Counts the connections it accepts."""

    def __init__(self) -> None:
        self.connections = 0
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> CountingServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self.release.set()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                request_line, *header_lines = head.decode().split("\r\n")
                path = request_line.split(" ")[1]
                headers = {
                    name.lower(): value
                    for name, _, value in (line.partition(": ") for line in header_lines)
                }
                if path == "/hang":
                    await self.release.wait()
                    return
                body = headers.get("x-echo", "").encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[CountingServer]:
    async with CountingServer() as server:
        yield server


async def test_client_before_open_is_a_clear_error() -> None:
    http = HttpClient()
    with pytest.raises(RuntimeError, match="not open"):
        _ = http.client
    with pytest.raises(RuntimeError, match="not open"):
        await http.check()


async def test_sequential_requests_reuse_one_pooled_connection(server: CountingServer) -> None:
    http = HttpClient(base_url=server.url, headers={"X-Echo": "from-defaults"})
    await http.open()
    try:
        for _ in range(5):
            response = await http.client.get("/echo")
            assert response.status_code == 200
            assert response.text == "from-defaults"
        response = await http.client.get("/echo", headers={"X-Echo": "per-call"})
        assert response.text == "per-call"
    finally:
        await http.close()
    assert server.connections == 1


async def test_read_timeout_applies(server: CountingServer) -> None:
    http = HttpClient(base_url=server.url, timeout=0.2)
    await http.open()
    try:
        with pytest.raises(httpx.ReadTimeout):
            await http.client.get("/hang")
    finally:
        await http.close()


async def test_check_fails_once_the_client_is_closed() -> None:
    http = HttpClient()
    await http.open()
    await http.check()
    await http.client.aclose()  # closed behind the resource's back
    with pytest.raises(RuntimeError, match="closed"):
        await http.check()
    await http.close()
    with pytest.raises(RuntimeError, match="not open"):
        await http.check()


async def test_a_given_transport_replaces_the_network() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    http = HttpClient(base_url="http://service.invalid", transport=transport)
    await http.open()
    try:
        assert (await http.client.get("/anything")).status_code == 204
    finally:
        await http.close()
