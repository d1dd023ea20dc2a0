"""The replay feed on an injected clock, the recorded feed, and both through the fake server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from markets.db.models import GameStatus
from markets.espn.client import EspnClient
from markets.espn.fake import FakeEspn, serve_fake
from markets.espn.fixtures import FIXTURES_ENV, RecordedFeed, default_fixtures_dir
from markets.espn.model import ParsedGame
from markets.espn.parser import parse_scoreboard
from markets.espn.replay import ReplayFeed, ReplayGame

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "espn"
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def feed(clock: Clock) -> ReplayFeed:
    return ReplayFeed(FIXTURES, speed=60.0, clock=clock, start=START)


def parsed(feed: ReplayFeed, game: ReplayGame) -> ParsedGame:
    games = parse_scoreboard(feed.scoreboard(game.league, game.day), game.league)
    (found,) = [g for g in games if g.espn_event_id == game.event_id]
    return found


def at(clock: Clock, feed: ReplayFeed, moment: datetime) -> None:
    clock.now = 100.0 + (moment - feed.start).total_seconds()


@pytest.mark.parametrize("league", ["nba", "mlb"])
def test_a_game_goes_pre_in_post_and_ends_with_a_winner(
    feed: ReplayFeed, clock: Clock, league: str
) -> None:
    game = min(
        (g for g in feed.games if g.league == league and not g.postponed), key=lambda g: g.start
    )
    postponed = next(g for g in feed.games if g.league == league and g.postponed)
    end = game.start + timedelta(seconds=game.real_duration(feed.speed))
    assert game.start - feed.start < timedelta(minutes=1)

    seen = []
    for moment in [
        feed.start,
        game.start + timedelta(seconds=5),
        game.start + (end - game.start) / 2,
    ]:
        at(clock, feed, moment)
        seen.append(parsed(feed, game))
        assert parsed(feed, postponed).status is GameStatus.POSTPONED
    at(clock, feed, end + timedelta(seconds=1))
    final = parsed(feed, game)

    assert [g.status for g in seen] == [GameStatus.PRE, GameStatus.IN, GameStatus.IN]
    assert seen[1].home_score <= seen[2].home_score <= final.home_score
    assert (final.status, final.completed) == (GameStatus.POST, True)
    assert (final.home_score, final.away_score) == (game.home_final, game.away_final)
    assert final.winner is not None
    assert final.start_time == game.start.replace(second=0)
    still = parsed(feed, postponed)
    assert (still.status, still.completed, still.winner) == (GameStatus.POSTPONED, False, None)


def test_at_speed_60_an_nba_game_takes_about_a_minute(feed: ReplayFeed) -> None:
    game = next(g for g in feed.games if g.league == "nba" and g.periods == 4)
    assert 55 <= game.real_duration(feed.speed) <= 75


def test_games_past_regulation(feed: ReplayFeed, clock: Clock) -> None:
    clock.now = 1e6
    periods = {
        league: max(
            g.period for g in parse_scoreboard(feed.scoreboard(league, START.date()), league)
        )
        for league in ("nba", "mlb")
    }
    assert periods["nba"] >= 5
    assert periods["mlb"] >= 10


def test_schedule_covers_today_and_the_next_days(feed: ReplayFeed) -> None:
    for league in ("nba", "mlb"):
        days = {g.day for g in feed.games if g.league == league}
        assert {START.date() + timedelta(days=n) for n in range(4)} <= days
        ids = [g.event_id for g in feed.games if g.league == league]
        assert len(ids) == len(set(ids))
    assert feed.scoreboard("nba", date(2030, 1, 1))["events"] == []


def test_recorded_feed_fills_other_days_with_fresh_ids() -> None:
    feed = RecordedFeed(FIXTURES, fill=True)
    day = date(2025, 7, 1)

    games = parse_scoreboard(feed.scoreboard("mlb", day), "mlb")

    assert games
    assert all(g.espn_event_id.startswith("20250701") for g in games)
    assert {g.start_time.date() for g in games} <= {day, day + timedelta(days=1)}
    assert RecordedFeed(FIXTURES).scoreboard("mlb", day) == {"events": []}


def test_default_fixtures_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(FIXTURES_ENV, raising=False)
    assert default_fixtures_dir().resolve() == FIXTURES.resolve()
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path))
    assert default_fixtures_dir() == tmp_path
    monkeypatch.setenv(FIXTURES_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=FIXTURES_ENV):
        default_fixtures_dir()


async def test_replay_feed_over_http(feed: ReplayFeed, clock: Clock) -> None:
    fake = FakeEspn(feed)
    at(clock, feed, feed.start + timedelta(hours=1))
    with serve_fake(fake) as base_url:
        async with httpx.AsyncClient(timeout=5.0) as http:
            games = await EspnClient(http, base_url).scoreboard("nba", START.date())
            faults = await http.post(f"{base_url}/_fake/faults", json={"latency": 0.05})
            stats = (await http.get(f"{base_url}/_fake/stats")).json()
            refused = await http.post(f"{base_url}/_fake/faults", json={"explode": 1})

    assert {g.status for g in games} == {GameStatus.POST, GameStatus.POSTPONED}
    assert all(g.winner is not None for g in games if g.completed)
    assert faults.json()["latency"] == fake.faults.latency == 0.05
    assert stats["requests"] == 1
    assert refused.status_code == 422


async def test_the_fake_serves_on_ipv6_loopback_and_names_its_url_in_brackets(
    feed: ReplayFeed,
) -> None:
    with serve_fake(FakeEspn(feed), host="::1") as base_url:
        async with httpx.AsyncClient(timeout=5.0) as http:
            stats = await http.get(f"{base_url}/_fake/stats")
    assert base_url.startswith("http://[::1]:")
    assert stats.status_code == 200
