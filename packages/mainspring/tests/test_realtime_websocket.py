"""The WebSocket endpoint end to end: one real `mainspring run` process, real clients.

Slow clients are raw sockets that complete the handshake and then stop reading, so the
server's writes really back up through both kernel buffers before its queues fill.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from process_support import Runner, free_port
from sample_apps.realtime_app import POLICIES, TOKEN
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from mainspring.realtime import MessageId

WAIT = 20.0
"""Bound on any one wait, so that a broken server fails the test instead of hanging it."""
READERS = 100
BIG = 50_000
"""Payload bytes of the messages that fill buffers: few frames, many bytes."""
ROUND = 20
"""Messages per round: within the `feed` and `drop` bounds (count and bytes), so a reader
that is sent everything before the next round never lags by more than the policy allows."""
MAX_ROUNDS = 40


def kernel_send_buffer_max() -> int:
    """How far the kernel may grow one socket's send buffer: what a stalled client's
    connection absorbs before the server's own queue for it starts to fill."""
    return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])


def offset(message_id: str) -> int:
    return MessageId.parse(message_id).offset


# -- the server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    port: int
    pid: int

    def ws_url(self, token: str | None = TOKEN) -> str:
        query = "" if token is None else f"?token={token}"
        return f"ws://127.0.0.1:{self.port}/ws{query}"

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    runner = Runner(tmp_path_factory.mktemp("realtime-websocket"))
    port = free_port()
    try:
        process = runner.start("tests.sample_apps.realtime_app:app", "--port", str(port))
        yield Server(port, runner.wait_serving(process, port))
    finally:
        runner.stop_all()


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as c:
        yield c


async def publish(http: httpx.AsyncClient, channel: str, payload: Any, key: str = "") -> str:
    params = {"key": key} if key else {}
    response = await http.post(f"/publish/{channel}", json=payload, params=params)
    response.raise_for_status()
    return str(response.json()["id"])


async def burst(http: httpx.AsyncClient, channel: str, count: int, size: int) -> int:
    """Publish `count` messages in one go; return the offset of the last."""
    response = await http.post(f"/burst/{channel}", params={"count": count, "size": size})
    response.raise_for_status()
    return offset(response.json()["last_id"])


async def counter(http: httpx.AsyncClient, name: str, channel: str) -> float:
    """A realtime counter from /metrics (loopback needs no admin token)."""
    sample = f'mainspring_realtime_{name}_total{{channel="{channel}"}} '
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(sample):
            return float(line.removeprefix(sample))
    return 0.0


# -- clients -------------------------------------------------------------------------


@asynccontextmanager
async def client(server: Server) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws_url(), open_timeout=WAIT, close_timeout=2) as ws:
        yield ws


async def send(ws: ClientConnection, request: dict[str, Any]) -> None:
    await ws.send(json.dumps(request))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def subscribe(ws: ClientConnection, channel: str, last_id: str | None = None) -> None:
    await send(ws, {"type": "subscribe", "channel": channel, "last_id": last_id})
    assert await receive(ws) == {"type": "subscribed", "channel": channel}


async def messages(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [await receive(ws) for _ in range(count)]


async def read_through(ws: ClientConnection, last: int, offsets: list[int]) -> None:
    """Append the offsets of the messages received until the one at `last`."""
    while not offsets or offsets[-1] < last:
        frame = json.loads(await ws.recv())
        if frame["type"] == "message":
            offsets.append(offset(frame["id"]))


async def read_forever(ws: ClientConnection) -> None:
    while True:
        await ws.recv()


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(read_forever(ws), WAIT)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@asynccontextmanager
async def readers(server: Server, channel: str) -> AsyncIterator[list[ClientConnection]]:
    """READERS clients subscribed to `channel` that will read everything sent to them."""
    async with AsyncExitStack() as stack:
        clients = await asyncio.gather(
            *(stack.enter_async_context(client(server)) for _ in range(READERS))
        )
        await asyncio.gather(*(subscribe(ws, channel) for ws in clients))
        yield list(clients)


class StalledClient:
    """Completes the handshake and subscribes, then reads nothing until told to.

    A blocking socket with websockets' sans-I/O protocol: nothing reads behind our back.
    """

    def __init__(self, server: Server, channel: str) -> None:
        self.sock = socket.socket()
        # A tiny receive window: the client's side of the backlog stays small and fixed.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(WAIT)
        self.sock.connect(("127.0.0.1", server.port))
        self.protocol = ClientProtocol(parse_uri(server.ws_url()), max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.frames: list[dict[str, Any]] = []
        while self.protocol.state is State.CONNECTING:
            self._receive()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc
        self.send({"type": "subscribe", "channel": channel})
        assert self.read_until("subscribed")[-1] == {"type": "subscribed", "channel": channel}

    def send(self, request: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(request).encode())
        self._flush()

    def read_until(self, kind: str) -> list[dict[str, Any]]:
        """Read up to the first frame of type `kind`; return every frame read so far."""
        while not any(frame["type"] == kind for frame in self.frames):
            assert self.protocol.state is State.OPEN, "closed"
            self._receive()
        return self.frames

    def read_to_end(self) -> int | None:
        """Read until the server ends the connection; its close code, None if it sent none."""
        while self.protocol.state is not State.CLOSED:
            self._receive()
        return None if self.protocol.close_rcvd is None else self.protocol.close_rcvd.code

    def offsets(self) -> list[int]:
        return [offset(frame["id"]) for frame in self.frames if frame["type"] == "message"]

    def close(self) -> None:
        self.sock.close()

    def _receive(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:  # the server cut off a client that did not read
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.frames.append(json.loads(bytes(event.data)))
        self._flush()

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)


@asynccontextmanager
async def stalled(server: Server, channel: str) -> AsyncIterator[StalledClient]:
    stalled = StalledClient(server, channel)
    try:
        yield stalled
    finally:
        stalled.close()


async def until_counted(
    http: httpx.AsyncClient,
    name: str,
    channel: str,
    before: float,
    readers: list[ClientConnection],
) -> tuple[int, int, list[list[int]]]:
    """Publish rounds, each read by every reader before the next, until the server's
    counter `name` for `channel` passes `before`; return the first and last offsets
    published and what each reader got."""
    received: list[list[int]] = [[] for _ in readers]
    first: int | None = None
    for _ in range(MAX_ROUNDS):
        last = await burst(http, channel, ROUND, BIG)
        if first is None:
            first = last - ROUND + 1
        async with asyncio.timeout(WAIT):
            await asyncio.gather(
                *(read_through(ws, last, into) for ws, into in zip(readers, received, strict=True))
            )
        if await counter(http, name, channel) > before:
            return first, last, received
    raise AssertionError(f"{name} never counted on {channel}")


async def fill_kernel_buffers(http: httpx.AsyncClient, channel: str) -> None:
    """Publish about half what a stalled connection's kernel buffers absorb, so that less
    is left to publish once readers are connected or memory is being measured."""
    for _ in range(kernel_send_buffer_max() // 2 // (ROUND * BIG)):
        await burst(http, channel, ROUND, BIG)


# -- the handshake ---------------------------------------------------------------------


@pytest.mark.parametrize("token", ["wrong", None])
async def test_an_unauthorized_client_is_refused_at_the_handshake(
    server: Server, token: str | None
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws_url(token), open_timeout=WAIT):
            pass
    assert refused.value.response.status_code == 403


# -- the protocol ----------------------------------------------------------------------


async def test_ping_is_answered_with_pong(server: Server) -> None:
    async with client(server) as ws:
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        ("not json", 1008, "messages must be JSON objects"),
        ("[" * 2000, 1008, "messages must be JSON objects"),
        (b'{"type": "ping"}', 1003, "send JSON text frames"),
        ('{"type": "shout"}', 1008, "type must be subscribe, unsubscribe or ping"),
        (json.dumps({"type": "ping", "pad": "x" * 4096}), 1009, "limited to 4096 bytes"),
        (json.dumps({"type": "ping", "pad": "€" * 2000}, ensure_ascii=False), 1009, "4096"),
    ],
    ids=["not-json", "too-deep", "binary", "unknown-type", "oversize", "oversize-in-bytes"],
)
async def test_a_protocol_violation_closes_with_a_code_and_reason(
    server: Server, frame: str | bytes, code: int, reason: str
) -> None:
    async with client(server) as ws:
        await ws.send(frame)
        closed_code, closed_reason = await closed_with(ws)
    assert closed_code == code
    assert reason in closed_reason


async def test_too_many_messages_close_with_1008(server: Server) -> None:
    async with client(server) as ws:
        with suppress(ConnectionClosed):  # the close may come before the last is sent
            for _ in range(200):  # the burst allows 30, refilled at 10 per second
                await send(ws, {"type": "ping"})
        assert await closed_with(ws) == (1008, "too many messages")


@pytest.mark.parametrize(
    ("request_", "error", "channel"),
    [
        ({"channel": "no spaces allowed"}, "invalid_request", "no spaces allowed"),
        ({"channel": 42}, "invalid_request", None),
        ({"channel": "feed", "last_id": "not-an-id"}, "invalid_request", "feed"),
        ({"channel": "secret"}, "forbidden_channel", "secret"),
    ],
    ids=["channel-name", "channel-type", "last-id", "forbidden"],
)
async def test_a_refused_subscribe_answers_an_error_and_keeps_the_socket(
    server: Server, request_: dict[str, Any], error: str, channel: str | None
) -> None:
    async with client(server) as ws:
        await send(ws, {"type": "subscribe", **request_})
        refusal = await receive(ws)
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
    assert refusal["type"] == "error"
    assert (refusal["error"], refusal["channel"]) == (error, channel)


# -- resume --------------------------------------------------------------------------


async def test_resume_after_a_reconnect_gets_exactly_the_missed_messages(
    server: Server, http: httpx.AsyncClient
) -> None:
    async with client(server) as ws:
        await subscribe(ws, "feed")
        seen = await burst(http, "feed", 5, 10)
        before = await messages(ws, 5)
    missed = await burst(http, "feed", 20, 10)

    async with client(server) as ws:
        await subscribe(ws, "feed", last_id=before[-1]["id"])
        replay = await messages(ws, 20)
        live = await publish(http, "feed", {"live": True})
        await send(ws, {"type": "ping"})
        after = await messages(ws, 2)

    assert [offset(m["id"]) for m in before] == list(range(seen - 4, seen + 1))
    assert [offset(m["id"]) for m in replay] == list(range(missed - 19, missed + 1))
    assert [m["data"]["n"] for m in replay] == list(range(20))
    # Nothing replayed twice, nothing else queued: the live message, then the pong.
    assert after == [
        {"type": "message", "channel": "feed", "id": live, "data": {"live": True}},
        {"type": "pong"},
    ]


async def test_a_gap_older_than_the_history_gets_one_resync_then_live_messages(
    server: Server, http: httpx.AsyncClient
) -> None:
    history = POLICIES["feed"].history
    async with client(server) as ws:
        await subscribe(ws, "feed")
        await burst(http, "feed", 1, 10)
        (last_seen,) = await messages(ws, 1)
    await burst(http, "feed", history + 10, 10)
    latest = await publish(http, "feed", {"latest": True})

    async with client(server) as ws:
        await subscribe(ws, "feed", last_id=last_seen["id"])
        resync = await receive(ws)
        live = await publish(http, "feed", {"live": True})
        following = await receive(ws)

    assert resync == {"type": "resync", "channel": "feed", "latest": latest}
    assert following["id"] == live
    assert offset(live) == offset(latest) + 1


async def test_an_id_from_another_epoch_gets_a_resync(
    server: Server, http: httpx.AsyncClient
) -> None:
    latest = await publish(http, "feed", {"latest": True})
    async with client(server) as ws:
        await subscribe(ws, "feed", last_id="0ther3poch:1")
        assert await receive(ws) == {"type": "resync", "channel": "feed", "latest": latest}


# -- slow clients ----------------------------------------------------------------------


async def test_a_client_that_never_reads_is_disconnected_while_others_get_everything(
    server: Server, http: httpx.AsyncClient
) -> None:
    before = await counter(http, "slow_disconnects", "feed")
    async with stalled(server, "feed") as slow:
        await fill_kernel_buffers(http, "feed")
        async with readers(server, "feed") as clients:
            first, last, received = await until_counted(
                http, "slow_disconnects", "feed", before, clients
            )
        close_code = slow.read_to_end()

    assert all(offsets == list(range(first, last + 1)) for offsets in received)
    # Its close frame may never get through the backlog: then the connection just ends.
    assert close_code in (1013, None)
    got = slow.offsets()
    assert got == list(range(got[0], got[0] + len(got))), "what it got is in order, no gap"
    assert got[-1] < last


async def test_a_disconnected_client_that_never_reads_does_not_keep_its_connection(
    server: Server, http: httpx.AsyncClient
) -> None:
    """asyncio's close() waits for the client to read the backlog; the server aborts instead,
    so the client sees a reset while it still has not read a byte."""
    before = await counter(http, "slow_disconnects", "feed")
    async with stalled(server, "feed") as slow:
        await fill_kernel_buffers(http, "feed")
        async with readers(server, "feed") as clients:
            await until_counted(http, "slow_disconnects", "feed", before, clients)
        deadline = time.monotonic() + WAIT
        while slow.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != errno.ECONNRESET:
            assert time.monotonic() < deadline, "the server kept the connection of a stuck client"
            await asyncio.sleep(0.05)


async def test_a_client_that_never_reads_a_drop_channel_stays_while_others_get_everything(
    server: Server, http: httpx.AsyncClient
) -> None:
    before = await counter(http, "dropped", "drop")
    async with stalled(server, "drop") as slow:
        await fill_kernel_buffers(http, "drop")
        async with readers(server, "drop") as clients:
            first, last, received = await until_counted(http, "dropped", "drop", before, clients)
        slow.send({"type": "ping"})
        frames = slow.read_until("pong")

    assert all(offsets == list(range(first, last + 1)) for offsets in received)
    got = slow.offsets()
    assert frames[-1] == {"type": "pong"}
    assert got == sorted(set(got)), "in order, no duplicates"
    assert got[-1] == last, "the newest messages are kept"
    assert len(got) < got[-1] - got[0] + 1, "older ones were dropped"


async def test_a_paused_client_of_a_latest_only_channel_ends_with_the_newest_per_key(
    server: Server, http: httpx.AsyncClient
) -> None:
    keys = [f"k{n}" for n in range(5)]
    updates = (kernel_send_buffer_max() + (2 << 20)) // BIG
    newest: dict[str, int] = {}
    async with stalled(server, "scores") as paused:
        for n in range(updates):
            key = keys[n % len(keys)]
            await publish(http, "scores", {"key": key, "n": n, "pad": "x" * BIG}, key=key)
            newest[key] = n
        paused.send({"type": "ping"})
        frames = paused.read_until("pong")

    values: dict[str, list[int]] = {key: [] for key in keys}
    for frame in frames:
        if frame["type"] == "message":
            values[frame["data"]["key"]].append(frame["data"]["n"])
    assert {key: got[-1] for key, got in values.items()} == newest
    assert all(got == sorted(got) for got in values.values())
    assert sum(map(len, values.values())) < updates, "superseded values were skipped"


async def test_stalled_clients_cost_the_server_bounded_memory(
    server: Server, http: httpx.AsyncClient
) -> None:
    """An unbounded queue would keep every message published after the stall; the
    policies bound what a stalled client holds to its queue and the channel's history."""
    size = 10_000
    count = 3000
    async with stalled(server, "drop") as kept, stalled(server, "feed") as dropped:
        for channel in ("drop", "feed"):
            await fill_kernel_buffers(http, channel)
        before = server.rss()
        for _ in range(count // ROUND):
            for channel in ("drop", "feed"):
                await burst(http, channel, ROUND, size)
        growth = server.rss() - before
        kept.send({"type": "ping"})
        assert kept.read_until("pong")[-1] == {"type": "pong"}, "the drop client stays"
        assert dropped.read_to_end() in (1013, None), "the feed client is disconnected"

    unbounded = 2 * (count * size - kernel_send_buffer_max())
    bound = sum(
        (policy.history + min(policy.max_lag, policy.max_queued_bytes // size)) * 2 * size
        for policy in (POLICIES["drop"], POLICIES["feed"])
    )
    slack = 4 << 20  # the interpreter and allocator, unrelated to any queue
    assert bound + slack < unbounded / 2, "the burst must be large enough to tell"
    assert growth < bound + slack, f"grew {growth} bytes"
