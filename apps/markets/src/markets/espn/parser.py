"""ESPN scoreboard JSON -> `ParsedGame`, following ../shared/fixtures/FORMAT.md.

A scoreboard is parsed event by event: one malformed event is logged with its id and
skipped, so a single odd game never stops the others from being updated.

Status rules (the only thing a market settles on):

- The names ESPN uses for "postponed", "suspended" and "canceled" decide the status
  whatever `state` says (they all come with `state: "post"` and `completed: false`).
- Other known names follow `state`: pre -> PRE, in -> IN (a rain delay is "in"),
  post -> POST only with `completed: true`, else SUSPENDED.
- An unknown name is logged once per process and never settles: pre -> PRE, in -> IN,
  post -> SUSPENDED with `completed` False, whatever ESPN says. SUSPENDED locks a market
  without voiding it, so nothing irreversible happens until the name is added here.
- `completed` is True only for POST; `winner` is set only when ESPN's winner flags agree
  with the integer scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from markets.db.models import GameStatus, Outcome
from markets.espn.errors import EspnPayloadError
from markets.espn.model import ParsedGame, ParsedTeam

log = structlog.get_logger("markets.espn")

_BY_NAME = {
    "STATUS_POSTPONED": GameStatus.POSTPONED,
    "STATUS_SUSPENDED": GameStatus.SUSPENDED,
    "STATUS_CANCELED": GameStatus.CANCELED,
}
"""Names whose meaning overrides `state`."""

_BY_STATE_NAMES = frozenset(
    {
        "STATUS_SCHEDULED",
        "STATUS_IN_PROGRESS",
        "STATUS_HALFTIME",
        "STATUS_END_PERIOD",
        "STATUS_RAIN_DELAY",
        "STATUS_DELAYED",
        "STATUS_FINAL",
    }
)
"""Known names for which `state` + `completed` tell the whole story."""

_unknown_names_logged: set[str] = set()


class MalformedEvent(ValueError):
    """One event lacks a field the parser needs; the event is skipped."""


def parse_scoreboard(payload: object, league: str) -> list[ParsedGame]:
    """Every well-formed event of a scoreboard payload; malformed ones are logged and skipped."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("events"), list):
        raise EspnPayloadError(f"not an ESPN {league} scoreboard: no 'events' list")
    games: list[ParsedGame] = []
    for event in payload["events"]:
        try:
            games.append(_parse_event(event, league))
        except MalformedEvent as exc:
            event_id = event.get("id") if isinstance(event, Mapping) else None
            log.warning("espn event skipped", league=league, event_id=event_id, reason=str(exc))
    return games


def parse_summary(payload: object, league: str) -> ParsedGame:
    """The game of a `summary?event=<id>` payload (its `header`); raises when malformed."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("header"), Mapping):
        raise EspnPayloadError(f"not an ESPN {league} summary: no 'header'")
    header = payload["header"]
    try:
        competition = _first(header, "competitions")
        home, away = _sides(competition)
        separator = "VS" if competition.get("neutralSite") is True else "@"
        name = f"{_team(away).abbreviation} {separator} {_team(home).abbreviation}"
        return _parse_game(league, _str(header, "id"), name, competition, home, away)
    except MalformedEvent as exc:
        raise EspnPayloadError(f"malformed ESPN summary ({league}): {exc}") from exc


def _parse_event(event: object, league: str) -> ParsedGame:
    event = _mapping(event, "event")
    competition = _first(event, "competitions")
    home, away = _sides(competition)
    name = _str(event, "shortName", default=_str(event, "name", default=""))
    return _parse_game(league, _str(event, "id"), name, event, home, away)


def _parse_game(
    league: str,
    event_id: str,
    name: str,
    source: Mapping[str, Any],
    home: Mapping[str, Any],
    away: Mapping[str, Any],
) -> ParsedGame:
    status_block = _mapping(source.get("status"), "status")
    status_type = _mapping(status_block.get("type"), "status.type")
    status, completed = _status(status_type, league, event_id)
    home_score, away_score = _score(home), _score(away)
    return ParsedGame(
        league=league,
        espn_event_id=event_id,
        name=name,
        start_time=_start_time(source),
        status=status,
        status_detail=_str(status_type, "detail", default=""),
        completed=completed,
        period=_int(status_block.get("period", 0), "status.period"),
        clock=_str(status_block, "displayClock", default=""),
        home=_team(home),
        away=_team(away),
        home_score=home_score,
        away_score=away_score,
        winner=_winner(home, away, home_score, away_score, league, event_id) if completed else None,
    )


def _status(status_type: Mapping[str, Any], league: str, event_id: str) -> tuple[GameStatus, bool]:
    name = _str(status_type, "name", default="")
    state = _str(status_type, "state")
    completed = status_type.get("completed") is True
    if name in _BY_NAME:
        return _BY_NAME[name], False
    if state not in ("pre", "in", "post"):
        raise MalformedEvent(f"unknown status state {state!r}")
    if name not in _BY_STATE_NAMES:
        if name not in _unknown_names_logged:
            _unknown_names_logged.add(name)
            log.warning(
                "espn status unknown", league=league, event_id=event_id, name=name, state=state
            )
        completed = False
    if state == "pre":
        return GameStatus.PRE, False
    if state == "in":
        return GameStatus.IN, False
    return (GameStatus.POST, True) if completed else (GameStatus.SUSPENDED, False)


def _winner(
    home: Mapping[str, Any],
    away: Mapping[str, Any],
    home_score: int,
    away_score: int,
    league: str,
    event_id: str,
) -> Outcome | None:
    """ESPN's winner flag, kept only when the scores say the same thing."""
    flags = (home.get("winner") is True, away.get("winner") is True)
    flagged = {(True, False): Outcome.HOME, (False, True): Outcome.AWAY}.get(flags)
    scored = _leader(home_score, away_score)
    if flagged is None or flagged != scored:
        log.warning(
            "espn winner inconsistent",
            league=league,
            event_id=event_id,
            home_winner=home.get("winner"),
            away_winner=away.get("winner"),
            home_score=home_score,
            away_score=away_score,
        )
        return None
    return flagged


def _leader(home_score: int, away_score: int) -> Outcome | None:
    if home_score == away_score:
        return None
    return Outcome.HOME if home_score > away_score else Outcome.AWAY


def _sides(competition: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    competitors = competition.get("competitors")
    if not isinstance(competitors, list):
        raise MalformedEvent("no competitors")
    by_side = {c.get("homeAway"): c for c in competitors if isinstance(c, Mapping)}
    if "home" not in by_side or "away" not in by_side:
        raise MalformedEvent("competitors lack a home and an away side")
    return by_side["home"], by_side["away"]


def _team(competitor: Mapping[str, Any]) -> ParsedTeam:
    team = _mapping(competitor.get("team"), "competitor.team")
    return ParsedTeam(
        espn_id=_str(team, "id"),
        abbreviation=_str(team, "abbreviation"),
        display_name=_str(team, "displayName", default=_str(team, "abbreviation")),
    )


def _score(competitor: Mapping[str, Any]) -> int:
    return _int(competitor.get("score", "0"), "competitor.score")


def _start_time(source: Mapping[str, Any]) -> datetime:
    raw = _str(source, "date")
    try:
        start = datetime.fromisoformat(raw)
    except ValueError:
        raise MalformedEvent(f"bad date {raw!r}") from None
    if start.tzinfo is None:
        raise MalformedEvent(f"date without a time zone {raw!r}")
    return start.astimezone(UTC)


def _first(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    items = parent.get(key)
    if not isinstance(items, list) or not items:
        raise MalformedEvent(f"no {key}")
    return _mapping(items[0], key)


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"{what} is not an object")
    return value


def _str(parent: Mapping[str, Any], key: str, *, default: str | None = None) -> str:
    value = parent.get(key)
    if isinstance(value, str):
        return value
    if value is None and default is not None:
        return default
    raise MalformedEvent(f"{key} is not a string: {value!r}")


def _int(value: object, what: str) -> int:
    """Scores arrive as strings ("0", "119"), periods as ints; floats or words are malformed."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise MalformedEvent(f"{what} is not an integer: {value!r}")
