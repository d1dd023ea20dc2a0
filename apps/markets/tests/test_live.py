"""The live channels: an import's market events over SSE and WebSocket, with resume; the
channel allow-list; service states published by the status feed."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from markets_support import listening
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect

from mainspring import MainspringSettings, ManualClock, Runtime, Service, loop
from mainspring.clock import settle
from mainspring.realtime import Hub, Message, Subscriber
from mainspring.realtime.metrics import RealtimeMetrics
from markets import live
from markets.espn.fake import FakeEspn, serve_fake
from markets.espn.fixtures import RecordedFeed

KNOWN = "markets, services, games:nba, games:mlb"
IMPORT = {"league": "mlb", "start": "2025-06-04", "end": "2025-06-04"}
GAMES_ON_THE_DAY = 15


async def sse_events(stream: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """(id, data) of each event of an SSE response."""
    event_id: str | None = None
    async for line in stream.aiter_lines():
        if line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            yield event_id, json.loads(line.removeprefix("data: "))
            event_id = None


async def test_an_import_is_streamed_over_sse_and_websocket_and_resumed(tmp_path: Path) -> None:
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'markets.db'}",
        "MAINSPRING_LEASE_URL": str(tmp_path / "leases"),
    }
    with serve_fake(FakeEspn(RecordedFeed())) as feed:
        async with (
            listening(espn_base_url=feed, **settings) as (_, url),
            httpx.AsyncClient(base_url=url, timeout=10) as client,
            asyncio.timeout(60),
        ):
            unknown = await client.get("/events/games:nhl")
            assert unknown.status_code == 404
            assert unknown.json()["detail"] == f"unknown channel 'games:nhl'; known: {KNOWN}"

            frames: list[tuple[str | None, dict[str, Any]]] = []
            async with client.stream("GET", "/events/markets") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                accepted = await client.post("/admin/imports", json=IMPORT)
                assert accepted.status_code == 202
                async for frame in sse_events(stream):
                    frames.append(frame)
                    if frame[1]["data"]["event"] == "voided":  # the board's last change
                        break
            updates = [data["data"] for _, data in frames]
            assert [u["event"] for u in updates].count("opened") == GAMES_ON_THE_DAY
            assert len({(u["market_id"], u["state"]) for u in updates}) == len(updates)
            first = updates[0]
            assert first["market"]["id"] == first["market_id"]
            assert first["market"]["game"]["id"] == first["game_id"]
            assert first["market"]["game"]["home"]["display_name"]
            ids = [event_id for event_id, _ in frames]
            assert all(ids)
            assert len(set(ids)) == len(ids)

            # A browser's EventSource reconnects with Last-Event-ID: what came after it.
            resume = {"Last-Event-ID": str(ids[4])}
            async with client.stream("GET", "/events/markets", headers=resume) as stream:
                async for frame in sse_events(stream):
                    assert frame == frames[5]
                    break

            async with connect(url.replace("http", "ws", 1) + "/ws") as socket:
                await socket.send(json.dumps({"type": "subscribe", "channel": "secrets"}))
                assert json.loads(await socket.recv()) == {
                    "type": "error",
                    "error": "forbidden_channel",
                    "channel": "secrets",
                    "detail": "not allowed on this socket",
                }
                request = {"type": "subscribe", "channel": "markets", "last_id": ids[-2]}
                await socket.send(json.dumps(request))
                subscribed = {"type": "subscribed", "channel": "markets"}
                assert json.loads(await socket.recv()) == subscribed
                assert json.loads(await socket.recv()) == frames[-1][1]


class Steady(Service):
    @loop(every=1)
    async def tick(self) -> None:
        pass


class CrashesLater(Service):
    async def run(self) -> None:
        await self.sleep(5)
        raise RuntimeError("boom")


def running(name: str) -> dict[str, Any]:
    return {"name": name, "state": "running", "reason": None, "error": None}


async def published(subscriber: Subscriber) -> list[dict[str, Any]]:
    items = []
    while len(subscriber.outbox):  # a writer takes a batch at a time
        items += await subscriber.outbox.get()
    return [json.loads(item.data) for item in items if isinstance(item, Message)]


async def test_service_changes_are_published_latest_first_and_never_twice() -> None:
    clock = ManualClock()
    hub = Hub(policies=live.POLICIES, metrics=RealtimeMetrics(CollectorRegistry()))
    async with Runtime(settings=MainspringSettings(), clock=clock, rng=random.Random(2)) as rt:
        await rt.open(hub)
        async with hub.connect() as watcher:
            await watcher.subscribe(live.SERVICES)
            statuses = live.StatusFeed(hub)
            rt.on_service_change(statuses.changed)
            rt.supervise(statuses)
            rt.supervise(CrashesLater(), name="flaky", restart="never")
            rt.supervise(Steady(), name="nba", enabled=False, reason="off")
            await clock.advance(0)
            await settle()
            started = await published(watcher)
            for name in ("status-feed", "flaky", "nba"):
                mine = [update for update in started if update["name"] == name]
                assert all(a != b for a, b in itertools.pairwise(mine)), mine
            latest = {update["name"]: update for update in started}
            assert latest == {
                "status-feed": running("status-feed"),
                "flaky": running("flaky"),
                "nba": {"name": "nba", "state": "disabled", "reason": "off", "error": None},
            }

            await clock.advance(5)
            await settle()
            assert await published(watcher) == [
                {
                    "name": "flaky",
                    "state": "failed",
                    "reason": "crashed and its restart policy is 'never'",
                    "error": "RuntimeError: boom",
                }
            ]
            await clock.advance(60)
            await settle()
            assert await published(watcher) == []
