"""`ReplayFeed`: recorded games replayed on a compressed clock, so a demo has games that move.

Games are scheduled in real time relative to the feed's start (the first a few seconds
after it), and each is played at `speed` game-seconds per real second: at 60, an NBA game
(48 minutes of play plus breaks) takes about a real minute, an MLB game about three.
Payloads are recorded events deep-copied and rewritten (id, date, status, scores), so they
have ESPN's exact shape. Games are listed under the UTC date of their start.
"""

from __future__ import annotations

import copy
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from markets.espn.fixtures import RecordedBoard, espn_date, load_boards

TODAY_OFFSETS = {
    "nba": (15, 45, 90, 150, 240, 360, 600, 900),
    "mlb": (30, 75, 120, 200, 300, 480, 720),
}
"""Real seconds after the feed's start at which today's games begin."""
POSTPONED_OFFSET = 1800
FUTURE_DAYS = 3
"""Days after today with two scheduled games each, for the schedule loop's look-ahead."""
OVERTIME = {"nba": (2, 5), "mlb": (1, 10)}
"""(index among today's games, periods played): one game per league goes past regulation."""
_ID_PREFIX = {"nba": "7", "mlb": "8"}
_REGULATION = {"nba": 4, "mlb": 9}


@dataclass(frozen=True)
class Segment:
    period: int
    seconds: float
    """Game seconds."""
    play: bool
    """False for a break: between quarters, at halftime, between half-innings."""
    half: str = ""
    """MLB only: Top, Mid, Bot or End."""


@dataclass(frozen=True)
class ReplayGame:
    league: str
    event_id: str
    start: datetime
    """Real wall-clock time the game begins (ESPN's `date` shows it floored to the minute)."""
    template: dict[str, Any]
    home_final: int
    away_final: int
    periods: int
    postponed: bool = False

    @property
    def day(self) -> date:
        return self.start.date()

    @property
    def segments(self) -> list[Segment]:
        return segments(self.league, self.periods)

    def real_duration(self, speed: float) -> float:
        return sum(s.seconds for s in self.segments) / speed


def segments(league: str, periods: int) -> list[Segment]:
    """The game's timeline: NBA 12-minute quarters and 5-minute overtimes; MLB half-innings."""
    timeline: list[Segment] = []
    for period in range(1, periods + 1):
        if league == "nba":
            if period > 1:
                timeline.append(Segment(period - 1, 900.0 if period == 3 else 120.0, play=False))
            timeline.append(Segment(period, 720.0 if period <= 4 else 300.0, play=True))
        else:
            timeline += [
                Segment(period, 540.0, play=True, half="Top"),
                Segment(period, 60.0, play=False, half="Mid"),
                Segment(period, 540.0, play=True, half="Bot"),
            ]
            if period < periods:
                timeline.append(Segment(period, 60.0, play=False, half="End"))
    return timeline


class ReplayFeed:
    def __init__(
        self,
        fixtures_dir: Path | None = None,
        *,
        speed: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        start: datetime | None = None,
        seed: int = 0,
    ) -> None:
        """`clock` is a monotonic clock (tests inject one); `start` is the wall time it maps to."""
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        self._clock = clock
        self._t0 = clock()
        boards = load_boards(fixtures_dir)
        self._leagues_block = {b.league: b.payload.get("leagues", []) for b in boards}
        self.games = schedule(boards, self.start, random.Random(seed))

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self._clock() - self._t0)

    def scoreboard(self, league: str, day: date) -> dict[str, Any]:
        now = self.now()
        games = [g for g in self.games if g.league == league and g.day == day]
        events = [render(g, now, self.speed) for g in games]
        return {
            "leagues": copy.deepcopy(self._leagues_block.get(league, [])),
            "day": {"date": day.isoformat()},
            "events": events,
        }


def schedule(
    boards: Iterable[RecordedBoard], start: datetime, rng: random.Random
) -> list[ReplayGame]:
    """Today's games seconds to minutes after `start`, one postponed, then a few days ahead."""
    # To the second: a feed started a moment after another never reuses its ids.
    stamp = int(start.timestamp())
    games: list[ReplayGame] = []
    for league, offsets in TODAY_OFFSETS.items():
        templates = _templates(boards, league)
        if not templates:
            continue
        starts = [start + timedelta(seconds=s) for s in offsets]
        first = start.replace(hour=0, minute=0, second=0, microsecond=0)
        for day in range(1, FUTURE_DAYS + 1):
            starts += [first + timedelta(days=day, hours=h) for h in (18, 23)]
        overtime_index, overtime_periods = OVERTIME[league]
        for index, game_start in enumerate([*starts, start + timedelta(seconds=POSTPONED_OFFSET)]):
            template = templates[index % len(templates)]
            home, away = _finals(template, league, rng)
            periods = overtime_periods if index == overtime_index else _REGULATION[league]
            games.append(
                ReplayGame(
                    league=league,
                    event_id=f"{_ID_PREFIX[league]}{stamp}{index:03d}",
                    start=game_start.replace(microsecond=0),
                    template=template,
                    home_final=home,
                    away_final=away,
                    periods=periods,
                    postponed=index == len(starts),
                )
            )
    return games


def render(game: ReplayGame, now: datetime, speed: float) -> dict[str, Any]:
    """The game as ESPN shows it at `now`."""
    status, fraction = _status(game, (now - game.start).total_seconds() * speed)
    event = copy.deepcopy(game.template)
    event["id"] = game.event_id
    event["uid"] = re.sub(r"e:\d+$", f"e:{game.event_id}", str(event.get("uid", "")))
    event["date"] = espn_date(game.start)
    event["status"] = status
    competition = event["competitions"][0]
    competition.update(
        id=game.event_id,
        date=event["date"],
        startDate=event["date"],
        status=copy.deepcopy(status),
    )
    completed = status["type"]["completed"]
    scores = {"home": game.home_final, "away": game.away_final}
    current = {side: math.floor(final * fraction) for side, final in scores.items()}
    for competitor in competition["competitors"]:
        side = competitor["homeAway"]
        other = "away" if side == "home" else "home"
        competitor["score"] = str(current[side])
        if completed:
            competitor["winner"] = current[side] > current[other]
    return event


def _status(game: ReplayGame, game_seconds: float) -> tuple[dict[str, Any], float]:
    """ESPN's `status` block at `game_seconds` since the start, and the share of play done."""
    nba = game.league == "nba"
    if game.postponed:
        return _block("6", "STATUS_POSTPONED", "post", False, 1, "Postponed", nba), 0.0
    if game_seconds < 0:
        detail = f"{game.start.month}/{game.start.day} - {game.start:%H:%M} UTC"
        return _block("1", "STATUS_SCHEDULED", "pre", False, 0 if nba else 1, detail, nba), 0.0
    timeline = game.segments
    total_play = sum(s.seconds for s in timeline if s.play)
    played = elapsed = 0.0
    for segment in timeline:
        if game_seconds < elapsed + segment.seconds:
            into = game_seconds - elapsed
            fraction = (played + (into if segment.play else 0.0)) / total_play
            return _live(game.league, segment, into), fraction
        elapsed += segment.seconds
        played += segment.seconds if segment.play else 0.0
    extra = game.periods > _REGULATION[game.league]
    detail = "Final" if not extra else f"Final/{_ot(game.periods) if nba else game.periods}"
    return _block("3", "STATUS_FINAL", "post", True, game.periods, detail, nba), 1.0


def _live(league: str, segment: Segment, into: float) -> dict[str, Any]:
    if league == "mlb":
        detail = f"{segment.half} {_ordinal(segment.period)}"
        return _block("2", "STATUS_IN_PROGRESS", "in", False, segment.period, detail, False)
    name = _ot(segment.period) if segment.period > 4 else _ordinal(segment.period)
    if not segment.play:
        if segment.period == 2:
            return _block("23", "STATUS_HALFTIME", "in", False, 2, "Halftime", True)
        detail = f"End of {name}"
        return _block("22", "STATUS_END_PERIOD", "in", False, segment.period, detail, True)
    remaining = segment.seconds - into
    display = f"{int(remaining // 60)}:{int(remaining % 60):02d}"
    detail = f"{display} - {name}"
    block = _block("2", "STATUS_IN_PROGRESS", "in", False, segment.period, detail, True)
    block.update(clock=float(int(remaining)), displayClock=display)
    return block


def _block(
    type_id: str, name: str, state: str, completed: bool, period: int, detail: str, nba: bool
) -> dict[str, Any]:
    return {
        "clock": 0.0,
        "displayClock": ("0.0" if nba else "0:00"),
        "period": period,
        "type": {
            "id": type_id,
            "name": name,
            "state": state,
            "completed": completed,
            "description": detail if state != "in" else "In Progress",
            "detail": detail,
            "shortDetail": detail,
        },
    }


def _templates(boards: Iterable[RecordedBoard], league: str) -> list[dict[str, Any]]:
    """Recorded events stripped of what would contradict the replayed state (winner, stats...)."""
    seen: dict[str, dict[str, Any]] = {}
    for board in boards:
        if board.league != league:
            continue
        for event in board.payload.get("events", []):
            template = copy.deepcopy(event)
            competition = template["competitions"][0]
            for key in ("situation", "odds", "tickets", "headlines", "highlights", "series"):
                competition.pop(key, None)
            for competitor in competition["competitors"]:
                for key in ("winner", "linescores", "statistics", "leaders", "probables"):
                    competitor.pop(key, None)
            seen.setdefault(event["id"], template)
    return list(seen.values())


def _finals(template: dict[str, Any], league: str, rng: random.Random) -> tuple[int, int]:
    """The recorded final score when there is one, else a plausible one; never a tie."""
    status = template["status"]["type"]
    sides = {c["homeAway"]: c for c in template["competitions"][0]["competitors"]}
    if status.get("completed") is True and sides["home"]["score"] != sides["away"]["score"]:
        return int(sides["home"]["score"]), int(sides["away"]["score"])
    low, high = (92, 128) if league == "nba" else (0, 9)
    home, away = rng.randint(low, high), rng.randint(low, high)
    return (home + 1, away) if home == away else (home, away)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _ot(period: int) -> str:
    return "OT" if period == 5 else f"{period - 4}OT"
