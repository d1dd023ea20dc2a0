"""The parser over every recorded ESPN payload, and over broken copies of them."""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from markets.db.models import GameStatus, Outcome
from markets.espn.errors import EspnPayloadError
from markets.espn.model import ParsedGame
from markets.espn.parser import parse_scoreboard, parse_summary

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "espn"

PRE, IN, POST = GameStatus.PRE, GameStatus.IN, GameStatus.POST

EXPECTED: dict[str, dict[GameStatus, int]] = {
    "mlb-2025-05-17-all-final-extra-innings.json": {POST: 15},
    "mlb-2025-05-18-mixed-in-progress-scheduled.json": {IN: 7, PRE: 8},
    "mlb-2025-06-04-mixed-with-postponed.json": {POST: 8, IN: 6, GameStatus.POSTPONED: 1},
    "mlb-2025-06-05-doubleheader-makeup-scheduled.json": {PRE: 13},
    "mlb-2025-06-06-suspended-and-extra-innings.json": {POST: 14, GameStatus.SUSPENDED: 1},
    "mlb-2025-09-27-mixed-rain-delay.json": {POST: 1, IN: 4, PRE: 10},
    "nba-2024-12-15-all-final.json": {POST: 7},
    "nba-2025-05-29-playoff-single-game-final.json": {POST: 1},
    "nba-2025-10-02-preseason-international-neutral-site.json": {PRE: 2},
    "nba-2026-02-18-no-games-all-star-break.json": {},
    "nba-2026-02-23-all-scheduled.json": {PRE: 3},
    "nba-2026-05-02-playoff-game7-in-progress.json": {IN: 1},
}
"""Statuses per scoreboard file; the rain delay counts as IN."""


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def board(name: str) -> dict[str, ParsedGame]:
    games = parse_scoreboard(load(name), name[:3])
    return {g.espn_event_id: g for g in games}


def test_every_scoreboard_fixture_is_covered() -> None:
    boards = {p.name for p in FIXTURES.glob("*.json") if "summary" not in p.name}
    assert boards == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parses_every_event_of_every_fixture(name: str) -> None:
    payload = load(name)
    games = parse_scoreboard(payload, name[:3])

    assert len(games) == len(payload["events"])
    assert Counter(g.status for g in games) == Counter(EXPECTED[name])
    for game in games:
        assert game.league == name[:3]
        assert game.start_time.tzinfo is UTC
        assert game.completed is (game.status is POST)
        if game.completed:
            leader = Outcome.HOME if game.home_score > game.away_score else Outcome.AWAY
            assert game.winner is leader
        else:
            assert game.winner is None


def test_final_nba_scores_and_winner() -> None:
    game = board("nba-2024-12-15-all-final.json")["401736810"]
    assert (game.name, game.home.abbreviation, game.away.abbreviation) == ("NO @ IND", "IND", "NO")
    assert (game.home_score, game.away_score, game.winner) == (119, 104, Outcome.HOME)
    assert game.start_time == datetime(2024, 12, 15, 22, 0, tzinfo=UTC)
    assert (game.status_detail, game.clock, game.period) == ("Final", "0.0", 4)


def test_postponed_game_is_not_completed() -> None:
    game = board("mlb-2025-06-04-mixed-with-postponed.json")["401695827"]
    assert game.status is GameStatus.POSTPONED
    assert (game.completed, game.winner, game.period) == (False, None, 1)
    assert (game.home_score, game.away_score) == (0, 0)
    assert (game.home.abbreviation, game.away.abbreviation) == ("STL", "KC")


def test_suspended_game_keeps_its_tied_score() -> None:
    game = board("mlb-2025-06-06-suspended-and-extra-innings.json")["401695844"]
    assert game.status is GameStatus.SUSPENDED
    assert (game.completed, game.winner, game.period) == (False, None, 7)
    assert (game.home_score, game.away_score) == (3, 3)


@pytest.mark.parametrize(
    ("name", "event_id"),
    [
        ("mlb-2025-05-17-all-final-extra-innings.json", "401695591"),
        ("mlb-2025-06-06-suspended-and-extra-innings.json", "401695856"),
    ],
)
def test_extra_innings(name: str, event_id: str) -> None:
    game = board(name)[event_id]
    assert game.period >= 10
    assert game.status_detail == "Final/10"
    assert game.completed
    assert game.winner is not None


def test_doubleheader_is_two_games_with_their_own_ids() -> None:
    games = board("mlb-2025-06-05-doubleheader-makeup-scheduled.json")
    first, second = games["401778098"], games["401695839"]
    assert (first.home, first.away) == (second.home, second.away)
    assert first.start_time == datetime(2025, 6, 5, 17, 45, tzinfo=UTC)
    assert second.start_time == datetime(2025, 6, 5, 23, 45, tzinfo=UTC)
    assert "401695827" not in games


def test_rain_delay_is_in_progress() -> None:
    games = board("mlb-2025-09-27-mixed-rain-delay.json").values()
    delayed = [g for g in games if g.status_detail.startswith("Rain Delay")]
    assert [g.status for g in delayed] == [IN]


def test_neutral_site_and_non_league_opponent() -> None:
    games = {
        g.name: g
        for g in board("nba-2025-10-02-preseason-international-neutral-site.json").values()
    }
    assert set(games) == {"PHI VS NY", "MEL VS NO"}
    melbourne = games["MEL VS NO"]
    assert (melbourne.away.espn_id, melbourne.away.abbreviation) == ("111124", "MEL")
    assert melbourne.start_time == datetime(2025, 10, 3, 9, 30, tzinfo=UTC)


def test_live_nba_clock_and_period() -> None:
    (game,) = board("nba-2026-05-02-playoff-game7-in-progress.json").values()
    assert (game.status, game.period, game.clock, game.completed) == (IN, 4, "8:41", False)


def test_summary_payload() -> None:
    game = parse_summary(load("nba-summary-401585135-2024-01-08-final.json"), "nba")
    assert (game.espn_event_id, game.name) == ("401585135", "BOS @ IND")
    assert (game.home_score, game.away_score, game.winner) == (133, 131, Outcome.HOME)
    assert game.status is POST
    assert game.completed
    assert game.start_time == datetime(2024, 1, 9, 0, 0, tzinfo=UTC)


def test_malformed_events_are_skipped_and_the_others_kept() -> None:
    payload = copy.deepcopy(load("mlb-2025-06-04-mixed-with-postponed.json"))
    events = payload["events"]
    broken = [e["id"] for e in events[:3]]
    del events[0]["competitions"][0]["competitors"]
    events[1]["date"] = "yesterday evening"
    events[2]["competitions"][0]["competitors"][0]["score"] = "three"

    with capture_logs() as logs:
        games = parse_scoreboard(payload, "mlb")

    assert len(games) == 12
    assert not {g.espn_event_id for g in games} & set(broken)
    skipped = [entry for entry in logs if entry["event"] == "espn event skipped"]
    assert [entry["event_id"] for entry in skipped] == broken


@pytest.mark.parametrize("payload", [[], "events", None, {}, {"events": None}, {"leagues": []}])
def test_a_payload_that_is_not_a_scoreboard_raises(payload: object) -> None:
    with pytest.raises(EspnPayloadError):
        parse_scoreboard(payload, "nba")


def with_status(name: str, state: str, completed: bool) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(load("nba-2024-12-15-all-final.json"))
    payload["events"] = payload["events"][:2]
    for event in payload["events"]:
        event["status"]["type"].update(name=name, state=state, completed=completed)
    return payload


@pytest.mark.parametrize(
    ("state", "completed", "expected"),
    [("pre", False, PRE), ("in", False, IN), ("post", True, GameStatus.SUSPENDED)],
)
def test_unknown_status_never_settles_and_is_logged_once(
    state: str, completed: bool, expected: GameStatus
) -> None:
    name = f"STATUS_NEW_{uuid.uuid4().hex[:8].upper()}"
    with capture_logs() as logs:
        games = parse_scoreboard(with_status(name, state, completed), "nba")

    assert [(g.status, g.completed, g.winner) for g in games] == [(expected, False, None)] * 2
    assert [entry["name"] for entry in logs if entry["event"] == "espn status unknown"] == [name]


def test_canceled_game() -> None:
    games = parse_scoreboard(with_status("STATUS_CANCELED", "post", False), "nba")
    assert {(g.status, g.completed, g.winner) for g in games} == {
        (GameStatus.CANCELED, False, None)
    }


def test_winner_flag_that_contradicts_the_score_is_dropped() -> None:
    payload = copy.deepcopy(load("nba-2025-05-29-playoff-single-game-final.json"))
    for competitor in payload["events"][0]["competitions"][0]["competitors"]:
        competitor["winner"] = not competitor["winner"]

    with capture_logs() as logs:
        (game,) = parse_scoreboard(payload, "nba")

    assert (game.status, game.completed, game.winner) == (POST, True, None)
    assert [entry["event"] for entry in logs] == ["espn winner inconsistent"]
