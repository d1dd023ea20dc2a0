"""`EspnClient` against the real fake ESPN server on 127.0.0.1, with a recording fake sleep."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from markets.db.models import GameStatus
from markets.espn.client import DayResult, EspnClient
from markets.espn.errors import EspnPayloadError, EspnRequestError
from markets.espn.fake import FakeEspn, serve_fake
from markets.espn.fixtures import RecordedFeed
from markets.espn.model import ParsedGame

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "espn"
POSTPONED_DAY = date(2025, 6, 4)
"""15 MLB games, one postponed (401695827)."""
WALL = 1_750_000_000.0


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture(scope="module")
def recorded() -> RecordedFeed:
    return RecordedFeed(FIXTURES)


@pytest.fixture
def fake(recorded: RecordedFeed) -> FakeEspn:
    return FakeEspn(recorded)


@pytest.fixture
def base_url(fake: FakeEspn) -> Iterator[str]:
    with serve_fake(fake) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def client(http: httpx.AsyncClient, base_url: str, sleep: FakeSleep) -> EspnClient:
    return EspnClient(http, base_url, retries=3, sleep=sleep, timeout=0.5, wall=lambda: WALL)


async def test_scoreboard(client: EspnClient, fake: FakeEspn, sleep: FakeSleep) -> None:
    games = await client.scoreboard("mlb", POSTPONED_DAY)

    assert len(games) == 15
    assert {g.espn_event_id for g in games if g.status is GameStatus.POSTPONED} == {"401695827"}
    assert (fake.stats.requests, sleep.delays) == (1, [])


async def test_a_day_without_games(client: EspnClient) -> None:
    assert await client.scoreboard("nba", date(2030, 1, 1)) == []


async def test_server_errors_are_retried_with_backoff(
    client: EspnClient, fake: FakeEspn, sleep: FakeSleep
) -> None:
    fake.faults.errors = 2

    games = await client.scoreboard("mlb", POSTPONED_DAY)

    assert len(games) == 15
    assert fake.stats.requests == 3
    assert len(sleep.delays) == 2
    assert all(0 <= d <= client.backoff.ceiling(n) for n, d in enumerate(sleep.delays, start=1))


async def test_server_errors_past_the_retries_raise(
    client: EspnClient, fake: FakeEspn, sleep: FakeSleep
) -> None:
    fake.faults.errors = 10

    with pytest.raises(EspnRequestError) as caught:
        await client.scoreboard("mlb", POSTPONED_DAY)

    assert (caught.value.status, caught.value.attempts) == (500, 4)
    assert (fake.stats.requests, len(sleep.delays)) == (4, 3)


async def test_timeouts_are_retried(client: EspnClient, fake: FakeEspn, sleep: FakeSleep) -> None:
    fake.faults.timeouts = 1

    games = await client.scoreboard("mlb", POSTPONED_DAY)

    assert len(games) == 15
    assert (fake.stats.requests, len(sleep.delays)) == (2, 1)


async def test_timeouts_past_the_retries_raise(
    http: httpx.AsyncClient, base_url: str, fake: FakeEspn, sleep: FakeSleep
) -> None:
    client = EspnClient(http, base_url, retries=1, sleep=sleep, timeout=0.2)
    fake.faults.timeouts = 2

    with pytest.raises(EspnRequestError) as caught:
        await client.scoreboard("mlb", POSTPONED_DAY)

    assert (caught.value.status, caught.value.attempts) == (None, 2)
    retryable = caught.value.__cause__
    assert retryable is not None
    assert isinstance(retryable.__cause__, httpx.TimeoutException)


async def test_connection_errors_are_retried(http: httpx.AsyncClient, sleep: FakeSleep) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = EspnClient(http, f"http://127.0.0.1:{closed_port}", retries=2, sleep=sleep)

    with pytest.raises(EspnRequestError) as caught:
        await client.scoreboard("nba", POSTPONED_DAY)

    assert caught.value.attempts == 3
    assert len(sleep.delays) == 2


async def test_429_waits_for_retry_after_seconds(
    client: EspnClient, fake: FakeEspn, sleep: FakeSleep
) -> None:
    fake.faults.rate_limits, fake.faults.retry_after = 1, "7"

    games = await client.scoreboard("mlb", POSTPONED_DAY)

    assert len(games) == 15
    assert sleep.delays == [7.0]


async def test_429_waits_for_retry_after_http_date(
    client: EspnClient, fake: FakeEspn, sleep: FakeSleep
) -> None:
    later = datetime.fromtimestamp(WALL, UTC) + timedelta(seconds=30)
    fake.faults.rate_limits, fake.faults.retry_after = 1, format_datetime(later, usegmt=True)

    await client.scoreboard("mlb", POSTPONED_DAY)

    assert sleep.delays == [30.0]


async def test_429_wait_is_bounded(
    http: httpx.AsyncClient, base_url: str, fake: FakeEspn, sleep: FakeSleep
) -> None:
    client = EspnClient(http, base_url, sleep=sleep, max_retry_after=60.0)
    fake.faults.rate_limits, fake.faults.retry_after = 1, "86400"

    await client.scoreboard("mlb", POSTPONED_DAY)

    assert sleep.delays == [60.0]


async def test_invalid_json_is_not_retried(
    client: EspnClient, fake: FakeEspn, sleep: FakeSleep
) -> None:
    fake.faults.invalid_json = 1

    with pytest.raises(EspnPayloadError):
        await client.scoreboard("mlb", POSTPONED_DAY)

    assert (fake.stats.requests, sleep.delays) == (1, [])


async def test_a_broken_event_is_skipped(
    client: EspnClient, fake: FakeEspn, recorded: RecordedFeed
) -> None:
    fake.faults.broken_events = 1
    first_id = recorded.scoreboard("mlb", POSTPONED_DAY)["events"][0]["id"]

    games = await client.scoreboard("mlb", POSTPONED_DAY)

    assert len(games) == 14
    assert first_id not in {g.espn_event_id for g in games}


async def test_unknown_league_is_refused(client: EspnClient) -> None:
    with pytest.raises(ValueError, match="unknown league"):
        await client.scoreboard("nhl", POSTPONED_DAY)


async def test_games_for_dates_bounds_concurrency_and_reports_each_day(
    http: httpx.AsyncClient, base_url: str, fake: FakeEspn, sleep: FakeSleep
) -> None:
    client = EspnClient(http, base_url, retries=0, sleep=sleep)
    days = [POSTPONED_DAY + timedelta(days=n) for n in range(12)]
    fake.faults.latency = 0.1
    fake.faults.errors = 1
    seen: list[tuple[date, DayResult]] = []

    async def on_result(day: date, result: DayResult) -> None:
        seen.append((day, result))

    results = await client.games_for_dates("mlb", days, concurrency=3, on_result=on_result)

    assert list(results) == days
    assert sorted(seen, key=lambda item: item[0]) == list(results.items())
    assert 2 <= fake.stats.max_concurrent <= 3
    failed = [day for day, result in results.items() if isinstance(result, EspnRequestError)]
    assert len(failed) == 1
    games: dict[date, list[ParsedGame]] = {
        day: result for day, result in results.items() if isinstance(result, list)
    }
    assert len(games) == 11
    if POSTPONED_DAY in games:
        assert len(games[POSTPONED_DAY]) == 15


async def test_games_for_dates_refuses_zero_concurrency(client: EspnClient) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await client.games_for_dates("nba", [POSTPONED_DAY], concurrency=0)
