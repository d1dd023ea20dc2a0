"""What the real-time benchmarks share: serving an app, reading a process's CPU and memory,
and lean clients (WebSocket, SSE, HTTP) for thousands of connections from one process.

The clients are small asyncio protocols rather than a client library so that the process
holding thousands of connections costs little next to the server being measured: a
WebSocket client parses frame headers and counts messages, inflating them when
per-message deflate was agreed; an SSE client counts events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from http_stack import cpu_seconds, pick_cpus, pin
from shutdown_latency import free_port, stop_server, tail, wait_until_serving

APPS = Path(__file__).resolve().parent / "apps"
UVICORN_FLAGS = ["--no-access-log", "--log-level", "warning", "--http", "httptools"]
UVICORN_FLAGS += ["--loop", "uvloop", "--ws", "websockets-sansio"]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STOP_TIMEOUT = 15.0

__all__ = ["cpu_seconds", "pick_cpus", "pin"]
"""Re-exported: the benchmarks pin the server and their clients, and read its CPU, the way
http_stack does."""


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def load_note() -> str:
    """Other work on the machine skews rates and latencies (CPU per unit of work less so)."""
    one, five, _ = os.getloadavg()
    return f"machine load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def read_syscalls(pid: int) -> int:
    """Read-type syscalls made by `pid` so far (/proc/PID/io syscr)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise RuntimeError(f"no syscr in /proc/{pid}/io")


@dataclass(frozen=True)
class Server:
    pid: int
    port: int


@contextmanager
def serve(
    target: str,
    *,
    flags: list[str] | None = None,
    env: dict[str, str] | None = None,
    cpus: list[int] | None = None,
    cwd: Path = APPS,
) -> Iterator[Server]:
    """Serve `module:app` with plain uvicorn (one worker) on 127.0.0.1; stop it by its pid."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", target, "--port", str(port)]
                + UVICORN_FLAGS
                + (flags or []),
                cwd=cwd,
                env={**os.environ, "PYTHONPATH": str(APPS), **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=pin(cpus),
            )
        try:
            wait_until_serving(proc, f"http://127.0.0.1:{port}/ping", log_path)
            yield Server(proc.pid, port)
        finally:
            stop_server(proc, STOP_TIMEOUT)
            errors = [line for line in tail(log_path, 200).splitlines() if "Traceback" in line]
            if errors:
                print(f"  (server log of {target} shows {len(errors)} tracebacks)", flush=True)


def run_driver(
    script: str, args: list[str], cpus: list[int] | None, timeout: float
) -> dict[str, Any]:
    """Run a benchmark's client side in its own process; it prints one JSON object."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=pin(cpus),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def http(port: int, method: str, target: str) -> Any:
    """One HTTP/1.1 request to 127.0.0.1; the JSON body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 2"):
        raise RuntimeError(f"{method} {target}: {head.splitlines()[0]!r}")
    return json.loads(body)


INFLATE_TAIL = b"\x00\x00\xff\xff"


class WsClient(asyncio.Protocol):
    """A WebSocket client that counts the messages it receives and keeps the last one."""

    def __init__(self, port: int, path: str, deflate: bool, want: int) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{offer if deflate else ''}\r\n"
        ).encode()
        self.buffer = bytearray()
        self.open = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inflate: Any = None
        self.messages = 0
        self.wire_bytes = 0
        self.last = b""
        self.want = want
        self.close_code: int | None = None
        self.reached: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        """Resolves with the loop time at which `want` messages had arrived (or it closed)."""
        self.transport: asyncio.Transport | None = None

    def expect(self, messages: int) -> asyncio.Future[float]:
        self.want = messages
        self.reached = asyncio.get_running_loop().create_future()
        self._check()
        return self.reached

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.opened, self.reached):
            if not future.done():
                future.set_exception(ConnectionError(f"closed ({self.close_code})"))

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        self.buffer += data
        if not self.open and not self._handshake():
            return
        buf, pos, end = self.buffer, 0, len(self.buffer)
        while end - pos >= 2:
            first, length, head = buf[pos], buf[pos + 1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(buf[pos + 2 : pos + 4]), 4
            elif length == 127:
                length, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if first & 0x40:
                payload = self.inflate.decompress(payload + INFLATE_TAIL)
            opcode = first & 0x0F
            if opcode in (1, 2):
                self.messages += 1
                self.last = payload
            elif opcode == 9:
                self.send(0xA, payload)
            elif opcode == 8:
                self.close_code = int.from_bytes(payload[:2]) if payload else 1005
        del buf[:pos]
        self._check()

    def _check(self) -> None:
        if self.messages >= self.want and not self.reached.done():
            self.reached.set_result(asyncio.get_running_loop().time())

    def _handshake(self) -> bool:
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return False
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {bytes(head[:80])!r}")
        if b"permessage-deflate" in head.lower():
            self.inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self.open = True
        self.opened.set_result(None)
        self.buffer = bytearray(rest)
        return True

    def send_text(self, text: str) -> None:
        self.send(0x1, text.encode())

    def send(self, opcode: int, payload: bytes) -> None:
        """One masked frame (clients must mask); payloads here are short."""
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if len(payload) > 125:
            raise ValueError("control and request frames are short")
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_websockets(
    port: int,
    path: str,
    count: int,
    *,
    deflate: bool,
    subscribe: str | None,
    concurrency: int = 100,
) -> list[WsClient]:
    """`count` clients, each sent `subscribe` (if any) and acknowledged by one message."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> WsClient:
        async with gate:
            _, client = await loop.create_connection(
                lambda: WsClient(port, path, deflate, want=1), "127.0.0.1", port
            )
            await client.opened
            if subscribe is not None:
                client.send_text(subscribe)
            await client.reached
            return client

    return await asyncio.gather(*(one() for _ in range(count)))


class SseClient(asyncio.Protocol):
    """An EventSource-like reader that counts events and hands each `data:` line on."""

    def __init__(self, port: int, path: str, on_data: Callable[[bytes], None] | None) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        self.on_data = on_data
        self.buffer = bytearray()
        self.head_seen = False
        self.events = 0
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.started.done():
            self.started.set_exception(ConnectionError("stream closed before it started"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.head_seen:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"stream refused: {bytes(head[:80])!r}")
            self.head_seen = True
            self.buffer = bytearray(rest)
            self.started.set_result(None)
        # Chunk-size lines carry no blank line of their own, so events still end in "\n\n";
        # a chunk-size line before a `data:` line is skipped like any other non-field line.
        buf, pos = self.buffer, 0
        while (end := buf.find(b"\n\n", pos)) >= 0:
            event, pos = buf[pos:end], end + 2
            self.events += 1
            if self.on_data is not None:
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        self.on_data(bytes(line[5:].strip()))
        del buf[:pos]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_streams(
    port: int,
    path: str,
    count: int,
    on_data: Callable[[bytes], None] | None = None,
    concurrency: int = 100,
) -> list[SseClient]:
    """`count` SSE streams whose response headers have arrived."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> SseClient:
        async with gate:
            _, client = await loop.create_connection(
                lambda: SseClient(port, path, on_data), "127.0.0.1", port
            )
            await client.started
            return client

    return await asyncio.gather(*(one() for _ in range(count)))
