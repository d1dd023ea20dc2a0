"""SportsService under the runtime: idempotent opening, crash mid-tick, two instances, ESPN faults.

The runtime's clock is a ManualClock set to 2025-06-04 12:00 UTC, so the loops ask
the local fake ESPN for the days of the recorded MLB boards (06-03 to 06-06).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from mainspring import MainspringSettings, ManualClock, Runtime, ServiceStatus, load_settings
from mainspring.realtime import Hub, Message, Subscriber
from mainspring.realtime.metrics import RealtimeMetrics
from mainspring.resources import Database
from markets import live
from markets.db.board import Announce
from markets.db.models import Market, MarketEvent, MarketState
from markets.espn.client import EspnClient
from markets.espn.fake import FakeEspn, Faults, serve_fake
from markets.espn.fixtures import RecordedFeed, default_fixtures_dir
from markets.espn.parser import parse_scoreboard
from markets.services import SportsService
from markets.settings import MarketsSettings

NOW = datetime(2025, 6, 4, 12, 0, tzinfo=UTC)
BOARDS = (
    "2025-06-04-mixed-with-postponed",
    "2025-06-05-doubleheader-makeup-scheduled",
    "2025-06-06-suspended-and-extra-innings",
)


def recorded_games() -> dict[str, Any]:
    """ESPN event id -> parsed game, for the boards the schedule loop sees from NOW."""
    games = {}
    for board in BOARDS:
        payload = json.loads((default_fixtures_dir() / f"mlb-{board}.json").read_text())
        games.update({g.espn_event_id: g for g in parse_scoreboard(payload, "mlb")})
    return games


async def eventually(condition: Callable[[], bool], within: float = 60.0) -> None:
    """Wait for real I/O (HTTP, database); the manual clock does not move meanwhile."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def no_sleep(seconds: float) -> None:
    """The ESPN client's retry backoff, without waiting for real."""


@pytest.fixture
def fake() -> FakeEspn:
    return FakeEspn(RecordedFeed())


@pytest.fixture
def feed_url(fake: FakeEspn) -> Iterator[str]:
    with serve_fake(fake) as url:
        yield url


@asynccontextmanager
async def league(
    database: Database,
    feed_url: str,
    clock: ManualClock,
    *,
    scores_every: float = 900,
    announce: Announce | None = None,
) -> AsyncIterator[tuple[Runtime, ServiceStatus]]:
    """The mlb service under a runtime on `clock`. A test must not move the clock past a
    tick's timeout while that tick still waits on real I/O, so each test advances only
    to the next tick it wants and then waits for it."""
    settings = load_settings(
        MarketsSettings,
        database_url="sqlite://",
        espn_base_url=feed_url,
        lookahead_days=2,
        schedule_interval=3600,
        scores_live_interval=scores_every,
        scores_idle_interval=scores_every,
    )
    async with httpx.AsyncClient(timeout=1.0) as http:
        espn = EspnClient(http, feed_url, retries=1, sleep=no_sleep)
        runtime = Runtime(
            settings=MainspringSettings(),
            clock=clock,
            on_fatal=lambda message: None,
            rng=random.Random(4),
        )
        async with runtime as rt:
            service = SportsService("mlb", database, espn, settings, announce)
            status = rt.supervise(service, name="mlb")
            yield rt, status


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(wall_start=NOW.timestamp())


def ticked(status: ServiceStatus, loop: str, count: int = 1) -> Callable[[], bool]:
    return lambda: loop in status.loops and status.loops[loop].ticks >= count


async def count(database: Database, query: Any) -> int:
    async with database.session() as session:
        return int(await session.scalar(query) or 0)


async def events_per_market(database: Database, kind: MarketState) -> dict[int, int]:
    query = (
        select(MarketEvent.market_id, func.count())
        .where(MarketEvent.kind == kind)
        .group_by(MarketEvent.market_id)
    )
    async with database.session() as session:
        return dict((await session.execute(query)).all())


async def test_schedule_opens_each_market_once_across_ticks_and_a_crash_mid_tick(
    database: Database, feed_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import markets.db.board as board

    real_upsert = board.upsert_games
    # A game only the schedule loop fetches (06-06 is beyond the score loop's two days):
    # the first time its day is stored, the process "dies" in the middle of the tick.
    doomed = next(g for g in recorded_games().values() if g.start_time.day == 6)
    crashed = False

    async def crash_once(session: Any, games: Any, **options: Any) -> Any:
        nonlocal crashed
        if not crashed and any(g.espn_event_id == doomed.espn_event_id for g in games):
            crashed = True
            raise RuntimeError("process died here")
        return await real_upsert(session, games, **options)

    monkeypatch.setattr(board, "upsert_games", crash_once)
    expected = recorded_games()
    async with league(database, feed_url, clock, scores_every=86400) as (_, status):
        await clock.advance(0)
        await eventually(ticked(status, "scores"))
        await eventually(ticked(status, "schedule"))
        assert status.loops["schedule"].failures == 1
        await clock.advance(3600)
        await eventually(ticked(status, "schedule", 2))
        await clock.advance(3600)
        await eventually(ticked(status, "schedule", 3))
        assert status.loops["schedule"].failures == 1
        assert status.state.value == "running"
    assert await count(database, select(func.count()).select_from(Market)) == len(expected)
    opened = await events_per_market(database, MarketState.OPEN)
    assert len(opened) == len(expected)
    assert set(opened.values()) == {1}


async def test_two_instances_settle_and_void_each_market_exactly_once(
    database: Database, feed_url: str, clock: ManualClock
) -> None:
    expected = recorded_games()
    finals = [g for g in expected.values() if g.completed and g.winner is not None]
    postponed = [g for g in expected.values() if g.status.value == "postponed"]
    async with (
        league(database, feed_url, clock) as (_, first),
        league(database, feed_url, clock) as (_, second),
    ):
        await clock.advance(0)
        for status in (first, second):
            await eventually(ticked(status, "schedule"))
            await eventually(ticked(status, "scores"))
        await clock.advance(900)
        for status in (first, second):
            await eventually(ticked(status, "scores", 2))
    settled = await events_per_market(database, MarketState.SETTLED)
    voided = await events_per_market(database, MarketState.VOIDED)
    assert len(settled) == len(finals)
    assert set(settled.values()) == {1}
    assert len(voided) == len(postponed) >= 1
    assert set(voided.values()) == {1}
    assert not set(settled) & set(voided)


@pytest.mark.parametrize(
    "fault",
    [
        Faults(errors=1000),
        Faults(timeouts=1000, hang=3.0),
        Faults(rate_limits=1000, retry_after="7"),
        Faults(invalid_json=1000),
    ],
    ids=["http-500", "timeout", "429-retry-after", "invalid-json"],
)
async def test_espn_faults_keep_the_service_up_with_backoff_visible_in_status(
    database: Database, feed_url: str, fake: FakeEspn, clock: ManualClock, fault: Faults
) -> None:
    fake.faults = fault
    async with league(database, feed_url, clock) as (rt, status):
        await clock.advance(0)
        await eventually(ticked(status, "scores"))
        await eventually(ticked(status, "schedule"))
        shown = next(s for s in (await rt.status())["services"] if s["name"] == "mlb")
        assert shown["state"] == "running"
        scores = shown["loops"]["scores"]
        assert scores["consecutive_failures"] == 1
        assert scores["last_error"]["type"].startswith("Espn")
        assert scores["next_tick_at"] is not None

        fake.faults = Faults()
        await clock.advance(900)
        await eventually(ticked(status, "scores", 2))
        assert status.loops["scores"].consecutive_failures == 0
    assert await count(database, select(func.count()).select_from(Market)) > 0


async def test_one_broken_event_is_skipped_and_the_rest_stored(
    database: Database, feed_url: str, fake: FakeEspn, clock: ManualClock
) -> None:
    fake.faults = Faults(broken_events=1000)
    async with league(database, feed_url, clock) as (_, status):
        await clock.advance(0)
        await eventually(ticked(status, "schedule"))
        assert status.loops["schedule"].failures == 0
    stored = await count(database, select(func.count()).select_from(Market))
    assert stored == len(recorded_games()) - len(BOARDS)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub(policies=live.POLICIES, metrics=RealtimeMetrics(CollectorRegistry()))
    await hub.open()
    yield hub
    await hub.close()


async def received(subscriber: Subscriber) -> list[tuple[str, dict[str, Any]]]:
    """What was published to `subscriber` since last asked: (channel, payload) pairs. The
    memory backend delivers at publish, and a tick publishes before it counts as done."""
    items = []
    while len(subscriber.outbox):  # a writer takes a batch at a time
        items += await subscriber.outbox.get()
    return [(m.channel, json.loads(m.data)) for m in items if isinstance(m, Message)]


def score_a_run(fake: FakeEspn) -> tuple[str, int]:
    """The home side of a live game of 2025-06-04 scores: the game's ESPN id, its new score."""
    board = next(b for b in fake.source.boards if b.name.startswith(f"mlb-{BOARDS[0]}"))
    event = next(e for e in board.payload["events"] if e["status"]["type"]["state"] == "in")
    home = next(c for c in event["competitions"][0]["competitors"] if c["homeAway"] == "home")
    home["score"] = str(int(home["score"]) + 1)
    return str(event["id"]), int(home["score"])


async def test_two_instances_publish_each_change_once_and_a_quiet_tick_nothing(
    database: Database, feed_url: str, fake: FakeEspn, clock: ManualClock, hub: Hub
) -> None:
    announce = live.Feed(hub)
    async with hub.connect() as watcher:
        for channel in (live.MARKETS, live.games("mlb")):
            await watcher.subscribe(channel)
        async with (
            league(database, feed_url, clock, announce=announce) as (_, first),
            league(database, feed_url, clock, announce=announce) as (_, second),
        ):
            await clock.advance(0)
            for status in (first, second):
                await eventually(ticked(status, "schedule"))
                await eventually(ticked(status, "scores"))
            published = await received(watcher)
            async with database.session() as session:
                written = await session.execute(select(MarketEvent.market_id, MarketEvent.kind))
                expected = sorted((market, kind.value) for market, kind in written)
            assert {channel for channel, _ in published} == {live.MARKETS}
            assert sorted((p["market_id"], p["state"]) for _, p in published) == expected
            assert {p["event"] for _, p in published} == {"opened", "locked", "settled", "voided"}

            await clock.advance(900)  # the same boards again: nothing changed
            for status in (first, second):
                await eventually(ticked(status, "scores", 2))
            assert await received(watcher) == []

            scored, home_score = score_a_run(fake)
            await clock.advance(900)
            for status in (first, second):
                await eventually(ticked(status, "scores", 3))
            (update,) = await received(watcher)  # one game moved, no market did
    channel, game = update
    assert channel == "games:mlb"
    assert (game["espn_event_id"], game["status"], game["home_score"]) == (scored, "in", home_score)
