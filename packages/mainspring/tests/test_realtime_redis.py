"""The Redis backend: hubs in one process standing in for workers, then real `mainspring run`
processes with WebSocket clients, through pubsub drops and a Redis restart."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from process_support import Runner, free_port, wait_for
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect

from mainspring import MainspringSettings, ManualClock, Runtime
from mainspring.clock import Clock
from mainspring.realtime import ChannelPolicy, Hub, Message, MessageId, Resync, Subscriber
from mainspring.realtime.backends.redis import RedisBackend
from mainspring.realtime.metrics import RealtimeMetrics

pytestmark = pytest.mark.redis

POLICIES = {"feed": ChannelPolicy(max_lag=1000, history=500), "short": ChannelPolicy(history=5)}
WAIT = 10.0
"""Bound on every wait for something to arrive, in seconds."""


# -- hubs in this process, one per "worker" ----------------------------------------------


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"test-rt-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@asynccontextmanager
async def hubs(url: str, prefix: str, *clocks: Clock | None) -> AsyncIterator[list[Hub]]:
    """One hub per clock, each with its own backend inside its own runtime."""
    async with AsyncExitStack() as stack:
        opened = []
        for clock in clocks:
            runtime = Runtime(
                settings=MainspringSettings(shutdown_timeout=10),
                clock=clock,
                on_fatal=lambda message: None,
                rng=random.Random(7),
            )
            rt = await stack.enter_async_context(runtime)
            hub = Hub(
                RedisBackend(url, prefix=prefix),
                policies=POLICIES,
                metrics=RealtimeMetrics(CollectorRegistry()),
            )
            opened.append(await rt.open(hub))
        yield opened


def backend(hub: Hub) -> RedisBackend:
    assert isinstance(hub.backend, RedisBackend)
    return hub.backend


async def until(condition: Callable[[], bool | Awaitable[bool]]) -> None:
    """Poll `condition` (a plain or an async one) until it holds, for at most WAIT."""
    async with asyncio.timeout(WAIT):
        while True:
            held = condition()
            if held if isinstance(held, bool) else await held:
                return
            await asyncio.sleep(0.01)


async def receive(subscriber: Subscriber, count: int) -> list[Message | Resync]:
    """Exactly the next `count` messages or resyncs of `subscriber`."""
    items: list[Message | Resync] = []
    async with asyncio.timeout(WAIT):
        while len(items) < count:
            for item in await subscriber.outbox.get():
                assert isinstance(item, Message | Resync), item
                items.append(item)
    assert len(items) == count, items
    return items


def offsets(items: list[Message | Resync] | list[Message]) -> list[int]:
    return [item.id.offset for item in items if isinstance(item, Message)]


async def listeners(client: aioredis.Redis, hub: Hub, channel: str) -> int:
    ((_, count),) = await client.pubsub_numsub(backend(hub).pubsub_name(channel))
    return int(count)


async def unheard(client: aioredis.Redis, hub: Hub, channel: str) -> None:
    """Wait until no connection listens to `channel` (an UNSUBSCRIBE is not awaited)."""

    async def silent() -> bool:
        return await listeners(client, hub, channel) == 0

    await until(silent)


async def kill_pubsub(client: aioredis.Redis, hub: Hub) -> None:
    """Cut this process's pubsub connections the way a proxy or a failover would, then
    wait until `hub` noticed."""
    assert backend(hub).subscriptions.connection is not None
    name = f"mainspring-realtime-{os.getpid()}"
    for connection in await client.client_list(_type="pubsub"):
        if connection["name"] == name:
            await client.client_kill_filter(_id=connection["id"])
    await until(lambda: backend(hub).subscriptions.connection is None)


async def test_every_worker_gets_every_message_once_in_the_same_order(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with hubs(redis_url, prefix, None, None) as (a, b):
        async with a.connect() as a1, a.connect() as a2, b.connect() as b1, b.connect() as b2:
            for subscriber in (a1, a2, b1, b2):
                await subscriber.subscribe("feed")
            # subscribe returned only once Redis confirmed: one pubsub connection per worker.
            assert await listeners(client, a, "feed") == 2

            sent = await asyncio.gather(
                *(hub.publish("feed", {"n": n}) for n in range(40) for hub in (a, b))
            )
            got = [await receive(s, len(sent)) for s in (a1, a2, b1, b2)]

        epoch = sent[0].id.epoch
        assert {m.id.epoch for m in sent} == {epoch}
        assert sorted(offsets(sent)) == list(range(1, 81))
        for items in got:
            assert offsets(items) == list(range(1, 81))
            assert [item.frame for item in items] == [item.frame for item in got[0]]
        replay = await b.backend.since("feed", MessageId(epoch, 77), b.policy("feed"))
        assert isinstance(replay, list)
        assert [m.frame for m in replay] == [item.frame for item in got[0][-3:]]
        await unheard(client, a, "feed")  # the last subscribers left


async def test_a_subscriber_resumes_from_its_last_id_or_is_told_to_resync(
    redis_url: str, prefix: str
) -> None:
    async with hubs(redis_url, prefix, None, None) as (a, b):
        sent = [await a.publish("short", n, key=f"k{n % 2}") for n in range(8)]
        async with b.connect() as resuming, b.connect() as too_late:
            await resuming.subscribe("short", sent[4].id)
            await too_late.subscribe("short", sent[1].id)  # 6 missed, 5 kept
            live = await a.publish("short", 8)

            assert offsets(await receive(resuming, 4)) == [6, 7, 8, 9]
            resync, message = await receive(too_late, 2)
        assert resync == Resync("short", sent[-1].id)
        assert isinstance(message, Message)
        assert message.id == live.id
        kept = await b.backend.since("short", sent[3].id, b.policy("short"))
        assert isinstance(kept, list)
        assert [(m.id, m.data, m.key) for m in kept] == [
            (m.id, m.data, m.key) for m in [*sent[4:], live]
        ]


async def test_when_redis_loses_the_epoch_old_ids_get_a_resync(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with hubs(redis_url, prefix, None, None) as (a, b), b.connect() as live:
        await live.subscribe("feed")
        before = await a.publish("feed", "before")
        await receive(live, 1)

        await client.delete(f"{backend(a).pubsub_name('feed')}:epoch")
        after = await a.publish("feed", "after")
        # A new epoch is not taken for a duplicate, and what the client holds may be stale.
        stale, message = await receive(live, 2)

        async with b.connect() as resuming:
            await resuming.subscribe("feed", before.id)
            (resync,) = await receive(resuming, 1)
    assert after.id.epoch != before.id.epoch
    assert after.id.offset == 1
    assert stale == Resync("feed", None)
    assert isinstance(message, Message)
    assert message.id == after.id
    assert resync == Resync("feed", after.id)


async def test_churning_subscribers_resume_without_gaps_and_leave_nothing_behind(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with hubs(redis_url, prefix, None, None) as (a, b):
        first = await a.publish("feed", 0)
        total = 200

        async def publisher() -> None:
            for n in range(1, total):
                await a.publish("feed", n)
                if n % 7 == 0:
                    await asyncio.sleep(0.001)

        async def churner(seed: int) -> list[int]:
            """Subscribe from the last id seen, take one batch, leave; until the end."""
            pace = random.Random(seed)
            seen, last = [], first.id
            while last.offset < total:
                async with b.connect() as subscriber:
                    await subscriber.subscribe("feed", last)
                    batch = await asyncio.wait_for(subscriber.outbox.get(), WAIT)
                assert all(isinstance(item, Message) for item in batch), batch
                seen += [item.id.offset for item in batch if isinstance(item, Message)]
                last = MessageId(last.epoch, seen[-1])
                await asyncio.sleep(pace.random() / 500)
            return seen

        async with asyncio.timeout(30):
            _, *seen = await asyncio.gather(publisher(), *(churner(seed) for seed in range(4)))

        for offsets_seen in seen:
            assert offsets_seen == list(range(2, total + 1))
        assert not b._local.get("feed")
        assert "feed" not in b._backend_channels
        assert backend(b).subscriptions.wanted == set()
        await unheard(client, b, "feed")


async def test_a_dropped_pubsub_connection_is_repaired_from_the_stream(
    redis_url: str, prefix: str, client: aioredis.Redis, clock: ManualClock
) -> None:
    # b's listener waits on the manual clock to reconnect: the outage lasts exactly as long
    # as the test wants, and whatever a published meanwhile can only reach b by repair.
    async with hubs(redis_url, prefix, None, clock) as (a, b), b.connect() as subscriber:
        await subscriber.subscribe("feed")

        await kill_pubsub(client, b)  # before b delivered anything on the channel
        for n in range(3):
            await a.publish("feed", n)
        await clock.advance(10)
        assert offsets(await receive(subscriber, 3)) == [1, 2, 3]

        await a.publish("feed", 3)
        assert offsets(await receive(subscriber, 1)) == [4]

        await kill_pubsub(client, b)
        for n in range(4, 9):
            await a.publish("feed", n)
        await clock.advance(10)
        await a.publish("feed", 9)
        assert offsets(await receive(subscriber, 6)) == [5, 6, 7, 8, 9, 10]
        await asyncio.sleep(0.05)
        assert len(subscriber.outbox) == 0  # and nothing twice


async def test_a_subscribe_cancelled_while_redis_is_away_leaves_nothing_subscribed(
    redis_url: str, prefix: str, client: aioredis.Redis, clock: ManualClock
) -> None:
    async with hubs(redis_url, prefix, clock) as (hub,):
        async with hub.connect() as keeper:
            await keeper.subscribe("feed")
            await kill_pubsub(client, hub)
            async with hub.connect() as subscriber:
                pending = asyncio.create_task(subscriber.subscribe("short"))
                await until(lambda: "short" in backend(hub).subscriptions.wanted)
                pending.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await pending
            assert backend(hub).subscriptions.wanted == {"feed"}
            await clock.advance(10)
            await until(lambda: backend(hub).subscriptions.connection is not None)
            await hub.publish("feed", "back")
            await receive(keeper, 1)
        assert await listeners(client, hub, "short") == 0
        assert not hub._local.get("short")
        assert "short" not in hub._backend_channels


async def test_malformed_pubsub_payloads_are_logged_and_skipped(
    redis_url: str, prefix: str, client: aioredis.Redis
) -> None:
    async with hubs(redis_url, prefix, None) as (hub,), hub.connect() as subscriber:
        await subscriber.subscribe("feed")
        name = backend(hub).pubsub_name("feed")
        with capture_logs() as logs:
            for junk in (b"junk", b'["e:1",null]', b'["e:1",5]\n1', b'["e:x",null]\n1'):
                await client.publish(name, junk)
            await client.publish(name, b'["e:1",null]\n\xff')
            sent = await hub.publish("feed", "fine")
            (got,) = await receive(subscriber, 1)
    assert isinstance(got, Message)
    assert got.id == sent.id
    skipped = [e for e in logs if e["event"] == "malformed realtime message skipped"]
    assert len(skipped) == 5


async def test_check_pings_redis_until_closed(redis_url: str, prefix: str) -> None:
    async with hubs(redis_url, prefix, None) as (hub,):
        await hub.check()
    with pytest.raises(RuntimeError, match="not open"):
        await hub.check()


# -- real processes --------------------------------------------------------------------


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart empties it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._answers, WAIT, f"redis-server on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def _answers(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, "redis-server exited"
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("MAINSPRING_REQUIRE_SERVERS") == "1":
            pytest.fail("redis-server is not installed and MAINSPRING_REQUIRE_SERVERS=1")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Client:
    """A WebSocket client of the sample app that keeps every frame it gets."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, channel: str, last_id: str | None = None) -> Client:
        url = f"ws://127.0.0.1:{port}/ws?token=let-me-in"
        client = cls(await connect(url, proxy=None, open_timeout=WAIT))
        request = {"type": "subscribe", "channel": channel, "last_id": last_id}
        await client.socket.send(json.dumps(request))
        await until(lambda: any(f["type"] == "subscribed" for f in client.frames))
        return client

    async def _read(self) -> None:
        async for raw in self.socket:
            self.frames.append(json.loads(raw))

    def messages(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "message"]

    def burst(self) -> list[dict[str, Any]]:
        """The messages a /burst sent, in the order they came."""
        return [m for m in self.messages() if isinstance(m["data"], dict) and "n" in m["data"]]

    async def close(self) -> None:
        await self.socket.close()
        self._reader.cancel()


APP = "tests.sample_apps.realtime_app:app"


class App:
    """Two `mainspring run` processes of the sample app sharing one Redis, and their clients."""

    def __init__(self, runner: Runner, redis_url: str) -> None:
        self.runner = runner
        self.ports = [free_port(), free_port()]
        self.processes = [
            runner.start(APP, "--port", str(port), env={"REDIS_URL": redis_url})
            for port in self.ports
        ]
        self.pids = [
            runner.wait_serving(p, port) for p, port in zip(self.processes, self.ports, strict=True)
        ]
        self.http = httpx.AsyncClient(trust_env=False, timeout=WAIT)
        self.clients: list[Client] = []

    async def connect(self, per_process: int = 2) -> None:
        for port in self.ports:
            for _ in range(per_process):
                self.clients.append(await Client.open(port, "feed"))

    async def post(self, process: int, path: str, **body: Any) -> httpx.Response:
        url = f"http://127.0.0.1:{self.ports[process]}{path}"
        return await self.http.post(url, json=body or {"probe": True})

    async def publish(self) -> str | None:
        """Publish a probe through the first process: its id, or None when that failed."""
        try:
            response = await self.post(0, "/publish/feed")
        except httpx.TransportError:  # e.g. a keep-alive connection closed after a 500
            return None
        return str(response.json()["id"]) if response.status_code == 200 else None

    async def live(self) -> None:
        """Publish probes until every client got one of them.

        After a Redis outage a listener may still be reconnecting: only a message that
        arrived proves delivery works again.
        """
        probes: set[str] = set()
        async with asyncio.timeout(3 * WAIT):
            while True:
                probe = await self.publish()
                if probe is not None:
                    probes.add(probe)
                await asyncio.sleep(0.1)
                got = [{m["id"] for m in c.messages()} for c in self.clients]
                if probes.intersection(*got):
                    return

    async def burst(self, process: int, count: int) -> str:
        """Publish `count` messages through one process; every client must get them all."""
        marks = self.marks()
        last = await self.post_burst(process, count)
        await self.delivered(marks, count, last)
        return last

    def marks(self) -> list[int]:
        return [len(c.burst()) for c in self.clients]

    async def post_burst(self, process: int, count: int) -> str:
        response = await self.post(process, f"/burst/feed?count={count}&size=8")
        assert response.status_code == 200
        return str(response.json()["last_id"])

    async def delivered(self, marks: list[int], count: int, last: str) -> None:
        """Every client got exactly the burst ending with `last` since `marks`, in order."""
        pairs = list(zip(self.clients, marks, strict=True))
        await until(lambda: all(len(c.burst()) >= m + count for c, m in pairs))
        for client, mark in pairs:
            assert_contiguous(client.burst()[mark:], count, last)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.http.aclose()


def assert_contiguous(messages: list[dict[str, Any]], count: int, last: str) -> None:
    """Exactly the `count` messages of one burst, in order, ending with `last`."""
    assert [m["data"]["n"] for m in messages] == list(range(count))
    epoch, _, offset = last.rpartition(":")
    expected = [f"{epoch}:{o}" for o in range(int(offset) - count + 1, int(offset) + 1)]
    assert [m["id"] for m in messages] == expected


@pytest.fixture
async def app(runner: Runner, redis_server: RedisServer) -> AsyncIterator[App]:
    app = await asyncio.to_thread(App, runner, redis_server.url)
    try:
        yield app
    finally:
        await app.close()
        await asyncio.to_thread(runner.stop_all)  # while their Redis is still up


@contextmanager
def frozen(process: subprocess.Popen[bytes]) -> Iterator[None]:
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


async def test_two_processes_deliver_to_every_client_through_pubsub_drops_and_restarts(
    app: App, redis_server: RedisServer
) -> None:
    await app.connect()
    await app.live()
    await app.burst(0, 20)
    await app.burst(1, 20)

    # The second process loses its pubsub connection while frozen: what is published
    # meanwhile can only reach its clients by repair from the stream.
    pid = app.pids[1]
    assert pid == app.processes[1].pid
    marks = app.marks()
    with redis_server.client() as admin:
        pubsub = admin.client_list(_type="pubsub")
        (theirs,) = [c for c in pubsub if c["name"] == f"mainspring-realtime-{pid}"]
        with frozen(app.processes[1]):
            admin.client_kill_filter(_id=theirs["id"])
            before = await app.post_burst(0, 10)
    await app.delivered(marks, 10, before)

    # A full restart: Redis forgets everything, so the epoch changes.
    redis_server.kill()
    assert await app.publish() is None
    redis_server.start()
    await app.live()
    for client in app.clients:
        assert any(f["type"] == "resync" and f["channel"] == "feed" for f in client.frames)
    await app.burst(1, 10)

    resuming = await Client.open(app.ports[1], "feed", last_id=before)
    try:
        await until(lambda: any(f["type"] == "resync" for f in resuming.frames))
        (resync,) = [f for f in resuming.frames if f["type"] == "resync"]
        assert resync["latest"].rpartition(":")[0] != before.rpartition(":")[0]
    finally:
        await resuming.close()
