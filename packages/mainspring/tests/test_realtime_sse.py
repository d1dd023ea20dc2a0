"""Server-Sent Events: the response itself driven on a manual clock, then real uvicorn
processes with httpx streaming clients, and a SIGTERM with 500 open connections."""

from __future__ import annotations

import asyncio
import json
import re
import resource
import signal
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from process_support import Runner, free_port
from sse_support import APP, EventReader, eventually, realtime_server, stream_client

from mainspring.clock import ManualClock, settle
from mainspring.realtime import ChannelPolicy, CloseReason, Message, MessageId
from mainspring.realtime.outbox import Outbox
from mainspring.realtime.sse import CLOSE_TIMEOUT, END, KEEPALIVE, EventStream

# -- the response on a manual clock ------------------------------------------------------


class Client:
    """The ASGI side of one connection: what the app sent, and a way to leave."""

    def __init__(self) -> None:
        self.sent: list[MutableMapping[str, Any]] = []
        self.gone = asyncio.Event()
        self.stuck = False

    async def receive(self) -> dict[str, Any]:
        if not self.sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.stuck and message["type"] == "http.response.body":
            await asyncio.Event().wait()  # a client that stopped reading
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    @property
    def ended(self) -> bool:
        return bool(self.sent) and self.sent[-1].get("more_body") is False


class Subscription:
    def __init__(self) -> None:
        self.outbox = Outbox()
        self.exited = False

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Outbox]:
        try:
            yield self.outbox
        finally:
            self.exited = True


POLICY = ChannelPolicy()


def message(offset: int) -> Message:
    return Message("c", MessageId("e", offset), json.dumps({"n": offset}).encode())


Stream = tuple[Subscription, Client, "asyncio.Task[None]"]


@pytest.fixture
async def stream(clock: ManualClock) -> AsyncIterator[Stream]:
    subscription, client = Subscription(), Client()
    response = EventStream(subscription(), keepalive=15.0, retry_ms=500, clock=clock)
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    await settle()
    yield subscription, client, task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_headers_retry_then_a_keepalive_after_each_idle_spell(
    stream: Stream, clock: ManualClock
) -> None:
    subscription, client, _ = stream
    headers = dict(client.sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
    assert client.body == b"retry: 500\n\n"

    await clock.advance(14.9)
    assert KEEPALIVE not in client.body
    await clock.advance(0.2)
    assert client.body.count(KEEPALIVE) == 1

    await clock.advance(10)
    subscription.outbox.put(message(1), POLICY)
    await settle()
    await clock.advance(14)  # the message restarted the idle spell
    assert client.body.count(KEEPALIVE) == 1
    await clock.advance(1.1)
    assert client.body.count(KEEPALIVE) == 2
    assert message(1).event in client.body


async def test_shutdown_ends_the_body_so_the_browser_reconnects(stream: Stream) -> None:
    subscription, client, task = stream
    subscription.outbox.close(CloseReason.SHUTDOWN)
    await asyncio.wait_for(task, 5)
    assert client.ended
    assert END not in client.body
    assert subscription.exited


async def test_done_delivers_what_is_queued_then_an_end_event(stream: Stream) -> None:
    subscription, client, task = stream
    subscription.outbox.put(message(1), POLICY)
    subscription.outbox.put(message(2), POLICY)
    subscription.outbox.close(CloseReason.DONE)
    await asyncio.wait_for(task, 5)
    assert client.body.endswith(message(1).event + message(2).event + END)
    assert client.ended


async def test_a_gone_client_ends_the_stream_at_once(stream: Stream) -> None:
    subscription, client, task = stream
    client.gone.set()
    await asyncio.wait_for(task, 5)
    assert subscription.outbox.closed is CloseReason.CLIENT_GONE
    assert subscription.exited
    assert not client.ended  # nothing more is written to a closed connection


async def test_a_send_stuck_behind_a_client_that_stopped_reading_does_not_hold_shutdown(
    stream: Stream, clock: ManualClock
) -> None:
    subscription, client, task = stream
    client.stuck = True
    subscription.outbox.put(message(1), POLICY)
    await settle()
    subscription.outbox.close(CloseReason.SHUTDOWN)
    await settle()
    assert subscription.exited
    await clock.advance(CLOSE_TIMEOUT)
    await asyncio.wait_for(task, 5)


# -- a real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with realtime_server(tmp_path_factory.mktemp("sse"), {"SSE_KEEPALIVE": "0.2"}) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with stream_client() as client:
        yield client


async def publish(client: httpx.AsyncClient, base: str, channel: str, n: int) -> str:
    response = await client.post(f"{base}/publish/{channel}", json={"n": n})
    return str(response.json()["id"])


async def test_a_stream_gets_published_messages_with_their_ids(
    server: str, client: httpx.AsyncClient
) -> None:
    async with client.stream("GET", f"{server}/events/sse-ids") as response:
        assert response.status_code == 200
        reader = EventReader(response)
        ids = [await publish(client, server, "sse-ids", n) for n in range(3)]
        events = await reader.take(3)
        assert reader.retry == 3000
    assert [e.id for e in events] == ids
    assert [e.json() for e in events] == [
        {"type": "message", "channel": "sse-ids", "id": i, "data": {"n": n}}
        for n, i in enumerate(ids)
    ]


async def test_resume_from_last_event_id_gets_exactly_the_missed_messages(
    server: str, client: httpx.AsyncClient
) -> None:
    ids = [await publish(client, server, "sse-resume", n) for n in range(5)]
    headers = {"Last-Event-ID": ids[1]}
    async with client.stream("GET", f"{server}/events/sse-resume", headers=headers) as response:
        reader = EventReader(response)
        missed = await reader.take(3)
        live = await publish(client, server, "sse-resume", 5)
        assert (await reader.next()).id == live
    assert [e.id for e in missed] == ids[2:]
    # The first connection of a page may name its last id in the query instead.
    async with client.stream("GET", f"{server}/events/sse-resume?last_id={ids[3]}") as response:
        assert [e.id for e in await EventReader(response).take(2)] == [ids[4], live]


async def test_a_gap_older_than_the_history_gets_a_resync(
    server: str, client: httpx.AsyncClient
) -> None:
    first = await publish(client, server, "feed", 0)  # "feed" keeps 50 messages
    last = (await client.post(f"{server}/burst/feed", params={"count": 60})).json()["last_id"]
    headers = {"Last-Event-ID": first}
    async with client.stream("GET", f"{server}/events/feed", headers=headers) as response:
        reader = EventReader(response)
        resync = await reader.next()
        live = await publish(client, server, "feed", 61)
        after = await reader.next()
    assert resync.event == "resync"
    assert resync.id == last  # the browser's Last-Event-ID moves on: no reconnect loop
    assert resync.json() == {"type": "resync", "channel": "feed", "latest": last}
    assert after.id == live


@pytest.mark.parametrize(
    ("query", "headers", "named"),
    [
        ("", {"Last-Event-ID": "not-an-id"}, "Last-Event-ID"),
        ("?last_id=7", {}, "last_id"),
    ],
)
async def test_an_invalid_resume_id_is_refused_before_streaming(
    server: str, client: httpx.AsyncClient, query: str, headers: dict[str, str], named: str
) -> None:
    response = await client.get(f"{server}/events/sse-bad{query}", headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].startswith(f"invalid {named}:")


async def test_an_invalid_channel_is_refused(server: str, client: httpx.AsyncClient) -> None:
    response = await client.get(f"{server}/events/no%20spaces")
    assert response.status_code == 400
    assert "channel name" in response.json()["detail"]


async def test_keepalives_flow_while_idle(server: str, client: httpx.AsyncClient) -> None:
    async with client.stream("GET", f"{server}/events/sse-idle") as response:
        assert await EventReader(response).comment() == "keepalive"


async def test_a_client_that_leaves_is_noticed_while_its_stream_is_idle(
    server: str, client: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(timeout=10) as other:
        streams = [other.stream("GET", f"{server}/events/sse-gone") for _ in range(10)]
        for stream in streams:
            await stream.__aenter__()
        await eventually(lambda: subscribers(client, server), 10, "10 subscribers")
        for stream in streams:
            await stream.__aexit__(None, None, None)
    await eventually(lambda: subscribers(client, server), 0, "the subscribers to leave")


async def subscribers(client: httpx.AsyncClient, base: str) -> float:
    text = (await client.get(f"{base}/metrics")).text
    found = re.search(r"^mainspring_realtime_subscribers (\S+)$", text, re.MULTILINE)
    assert found is not None, "mainspring_realtime_subscribers is missing from /metrics"
    return float(found.group(1))


# -- shutdown with 500 connections -------------------------------------------------------

SOCKETS = 250
STREAMS = 250
GRACEFUL_TIMEOUT = 20


@pytest.fixture
def enough_files() -> None:
    """Each connection is a descriptor here; raise the soft limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * (SOCKETS + STREAMS) + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


async def test_sigterm_closes_every_socket_with_1012_and_ends_every_stream(
    runner: Runner, client: httpx.AsyncClient, enough_files: None
) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port), "--graceful-timeout", str(GRACEFUL_TIMEOUT))
    runner.wait_serving(process, port)
    base = f"http://127.0.0.1:{port}"
    gate = asyncio.Semaphore(50)

    async def socket_client(opened: asyncio.Event) -> int | None:
        async with gate:
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?token=let-me-in")
            await ws.send(json.dumps({"type": "subscribe", "channel": "shutdown"}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
        opened.set()
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        return ws.close_code

    async def stream_client(opened: asyncio.Event) -> list[str]:
        async with gate:
            stream = client.stream("GET", f"{base}/events/shutdown")
            response = await stream.__aenter__()
        opened.set()
        try:
            reader = EventReader(response, wait=GRACEFUL_TIMEOUT + 10)
            await reader.rest()  # raises if the stream is cut off instead of ended
            return reader.comments
        finally:
            await stream.__aexit__(None, None, None)

    opened = [asyncio.Event() for _ in range(SOCKETS + STREAMS)]
    sockets = [asyncio.create_task(socket_client(e)) for e in opened[:SOCKETS]]
    streams = [asyncio.create_task(stream_client(e)) for e in opened[SOCKETS:]]
    async with asyncio.timeout(60):
        await asyncio.gather(*(e.wait() for e in opened))
    assert await subscribers(client, base) == SOCKETS + STREAMS

    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*sockets)
    comments = await asyncio.gather(*streams)
    code = await asyncio.to_thread(runner.wait_exit, process)
    took = time.monotonic() - began

    assert code == 0
    assert took < GRACEFUL_TIMEOUT, "shutdown waited for the graceful timeout"
    assert codes == [1012] * SOCKETS
    assert all(c[-1] == "server shutting down" for c in comments)
    assert "timeout graceful shutdown exceeded" not in runner.output(process)
