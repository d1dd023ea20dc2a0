"""The API's response and request bodies, with the examples OpenAPI shows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from markets.api.params import LEAGUE_CHOICES
from markets.db.models import (
    Game,
    GameStatus,
    ImportRun,
    ImportState,
    Market,
    MarketState,
    Outcome,
)
from markets.db.store import as_utc
from markets.espn.model import LEAGUES
from markets.importer import MAX_IMPORT_DAYS, check_league, check_range

UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""Always with its zone: SQLite hands back stored UTC times without one."""

TEAM_EXAMPLE: dict[str, Any] = {
    "id": 3,
    "espn_id": "13",
    "abbreviation": "LAL",
    "display_name": "Los Angeles Lakers",
}
GAME_EXAMPLE: dict[str, Any] = {
    "id": 12,
    "league": "nba",
    "espn_event_id": "401585135",
    "name": "LAL @ BOS",
    "start_time": "2024-01-09T00:30:00Z",
    "status": "post",
    "status_detail": "Final",
    "completed": True,
    "period": 4,
    "clock": "0.0",
    "home": {
        **TEAM_EXAMPLE,
        "id": 4,
        "espn_id": "2",
        "abbreviation": "BOS",
        "display_name": "Boston Celtics",
    },
    "away": TEAM_EXAMPLE,
    "home_score": 126,
    "away_score": 115,
    "winner": "home",
}
MARKET_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "question": "Will BOS beat LAL? (LAL @ BOS, 2024-01-09)",
    "state": "settled",
    "outcome": "home",
    "opened_at": "2024-01-08T12:00:00Z",
    "locked_at": "2024-01-09T00:30:00Z",
    "settled_at": "2024-01-09T03:02:00Z",
    "voided_at": None,
    "game": GAME_EXAMPLE,
}
EVENT_EXAMPLE: dict[str, Any] = {
    "id": 20,
    "kind": "settled",
    "from_state": "locked",
    "detail": {"home_score": 126, "away_score": 115},
    "at": "2024-01-09T03:02:00Z",
}


class TeamOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    espn_id: str
    abbreviation: str
    display_name: str


class GameOut(BaseModel):
    id: int
    league: str
    espn_event_id: str
    name: str
    start_time: UtcDatetime
    status: GameStatus
    status_detail: str
    completed: bool
    period: int
    clock: str
    home: TeamOut
    away: TeamOut
    home_score: int
    away_score: int
    winner: Outcome | None
    model_config = ConfigDict(json_schema_extra={"examples": [GAME_EXAMPLE]})

    @classmethod
    def of(cls, game: Game) -> GameOut:
        return cls(
            id=game.id,
            league=game.league.code,
            espn_event_id=game.espn_event_id,
            name=game.name,
            start_time=game.start_time,
            status=game.status,
            status_detail=game.status_detail,
            completed=game.completed,
            period=game.period,
            clock=game.clock,
            home=TeamOut.model_validate(game.home_team),
            away=TeamOut.model_validate(game.away_team),
            home_score=game.home_score,
            away_score=game.away_score,
            winner=game.winner,
        )


class GameDetail(GameOut):
    market_id: int | None = Field(description="The market on this game, if one was opened.")
    model_config = ConfigDict(json_schema_extra={"examples": [{**GAME_EXAMPLE, "market_id": 7}]})


class MarketOut(BaseModel):
    id: int
    question: str
    state: MarketState
    outcome: Outcome | None
    opened_at: UtcDatetime
    locked_at: UtcDatetime | None
    settled_at: UtcDatetime | None
    voided_at: UtcDatetime | None
    game: GameOut
    model_config = ConfigDict(json_schema_extra={"examples": [MARKET_EXAMPLE]})

    @classmethod
    def fields_of(cls, market: Market) -> dict[str, Any]:
        return {
            "id": market.id,
            "question": market.question,
            "state": market.state,
            "outcome": market.outcome,
            "opened_at": market.opened_at,
            "locked_at": market.locked_at,
            "settled_at": market.settled_at,
            "voided_at": market.voided_at,
            "game": GameOut.of(market.game),
        }

    @classmethod
    def of(cls, market: Market) -> MarketOut:
        return cls(**cls.fields_of(market))


class MarketEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: MarketState = Field(description="The state the market entered.")
    from_state: MarketState | None
    detail: dict[str, Any]
    at: UtcDatetime


class MarketDetail(MarketOut):
    events: list[MarketEventOut] = Field(description="Every state change, oldest first.")
    model_config = ConfigDict(
        json_schema_extra={"examples": [{**MARKET_EXAMPLE, "events": [EVENT_EXAMPLE]}]}
    )


class MarketPage(BaseModel):
    items: list[MarketOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [MARKET_EXAMPLE], "next_cursor": "aWQ6Nw"}]}
    )


class ImportRequest(BaseModel):
    league: str = Field(
        description=f"One of: {', '.join(sorted(LEAGUES))}.",
        json_schema_extra=LEAGUE_CHOICES,
    )
    start: date = Field(description="First day (US date, as ESPN lists games).")
    end: date = Field(description=f"Last day, inclusive; at most {MAX_IMPORT_DAYS} days in all.")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"league": "nba", "start": "2024-01-01", "end": "2024-01-31"}]
        }
    )

    @field_validator("league")
    @classmethod
    def known_league(cls, league: str) -> str:
        _checked(check_league, league)
        return league

    @model_validator(mode="after")
    def bounded_range(self) -> ImportRequest:
        _checked(check_range, self.start, self.end)
        return self


def _checked(check: Callable[..., None], *args: Any) -> None:
    """Run `check`; its ValueError becomes a 422 message without pydantic's "Value error, "."""
    try:
        check(*args)
    except ValueError as exc:
        raise PydanticCustomError("value_error", str(exc)) from None


class ImportAccepted(BaseModel):
    id: int
    state: ImportState
    status_url: str
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": 3, "state": "queued", "status_url": "/admin/imports/3"}]
        }
    )


class ImportOut(BaseModel):
    id: int
    league: str
    requested_by: str
    start: date
    end: date
    state: ImportState
    dates_total: int
    dates_done: int
    games_seen: int
    markets_opened: int
    errors: dict[str, str] = Field(description="ISO date -> why that day could not be imported.")
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 3,
                    "league": "nba",
                    "requested_by": "admin",
                    "start": "2024-01-01",
                    "end": "2024-01-31",
                    "state": "running",
                    "dates_total": 31,
                    "dates_done": 12,
                    "games_seen": 84,
                    "markets_opened": 80,
                    "errors": {"2024-01-05": "ESPN answered 503"},
                    "created_at": "2024-02-01T09:00:00Z",
                    "finished_at": None,
                }
            ]
        }
    )

    @classmethod
    def of(cls, run: ImportRun, league: str) -> ImportOut:
        return cls(
            id=run.id,
            league=league,
            requested_by=run.requested_by,
            start=run.start_date,
            end=run.end_date,
            state=run.state,
            dates_total=run.dates_total,
            dates_done=run.dates_done,
            games_seen=run.games_seen,
            markets_opened=run.markets_opened,
            errors={day: str(message) for day, message in run.errors.items()},
            created_at=run.created_at,
            finished_at=run.finished_at,
        )
