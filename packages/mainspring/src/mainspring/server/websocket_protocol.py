"""uvicorn's WebSocket protocol, except that a client that stopped reading is cut off.

asyncio's ``transport.close()`` waits until the write buffer has drained. A client that
never reads never lets it drain, so after a slow-consumer close (1013), a keepalive
timeout or a shutdown, uvicorn's own protocol would keep its socket, its file descriptor
and megabytes of kernel buffer forever. Here, closing while data is still waiting to be
written (asyncio only buffers it when the kernel's buffer is full) resets the connection:
an abort with a zero linger time, so the kernel drops its buffer too.
"""

from __future__ import annotations

import socket
import struct
from asyncio import BaseTransport, Transport
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class _AbortWhenStuck:
    """The transport, with a ``close`` that aborts while the peer is not reading."""

    def __init__(self, transport: Transport, protocol: WebSocketProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        if self._protocol.writable.is_set() and not self._transport.get_write_buffer_size():
            self._transport.close()
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """Use with ``uvicorn --ws mainspring.server.websocket_protocol:WebSocketProtocol``;
    `mainspring run` uses it already."""

    def connection_made(self, transport: BaseTransport) -> None:
        wrapped = _AbortWhenStuck(cast(Transport, transport), self)
        super().connection_made(cast(BaseTransport, wrapped))
