"""What the pollers keep of an ESPN event: the parser's output, the store's input."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from markets.db.models import GameStatus, Outcome

LEAGUES = {"nba": "basketball/nba", "mlb": "baseball/mlb"}
"""League code -> ESPN's sport path."""


@dataclass(frozen=True)
class ParsedTeam:
    espn_id: str
    abbreviation: str
    display_name: str


@dataclass(frozen=True)
class ParsedGame:
    league: str
    espn_event_id: str
    name: str
    start_time: datetime
    """Aware, UTC."""
    status: GameStatus
    status_detail: str
    completed: bool
    period: int
    clock: str
    home: ParsedTeam
    away: ParsedTeam
    home_score: int
    away_score: int
    winner: Outcome | None
    """Only when the game is completed and ESPN's winner flag agrees with the score."""
