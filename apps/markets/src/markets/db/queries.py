"""Loading markets and games with what the API and the dashboard show of them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import contains_eager, joinedload

from markets.db.models import Game, League, Market, Team


def markets_with_games() -> Select[Market]:
    """Markets joined to their game and league (filter on `Game` and `League` freely)."""
    return (
        select(Market)
        .join(Market.game)
        .join(Game.league)
        .options(
            contains_eager(Market.game).contains_eager(Game.league),
            contains_eager(Market.game).joinedload(Game.home_team),
            contains_eager(Market.game).joinedload(Game.away_team),
        )
    )


def games_with_teams() -> Select[Game]:
    return select(Game).options(
        joinedload(Game.league), joinedload(Game.home_team), joinedload(Game.away_team)
    )


MARKETS, GAMES, LEAGUE_TABLE = Market.__table__, Game.__table__, League.__table__
"""The tables, to filter `MARKET_PAGE_ROWS` without making it an ORM query again."""


def _market_page_rows() -> Select[Any]:
    markets, games, leagues = MARKETS, GAMES, LEAGUE_TABLE
    home, away = Team.__table__.alias("home_team"), Team.__table__.alias("away_team")
    return (
        select(
            *(markets.c[name] for name in MARKET_COLUMNS),
            games.c.id.label("game_id"),
            leagues.c.code.label("league"),
            *(games.c[name] for name in GAME_COLUMNS),
            *(home.c[name].label(f"home_{name}") for name in TEAM_COLUMNS),
            *(away.c[name].label(f"away_{name}") for name in TEAM_COLUMNS),
        )
        .join_from(markets, games, markets.c.game_id == games.c.id)
        .join(leagues, games.c.league_id == leagues.c.id)
        .join(home, games.c.home_team_id == home.c.id)
        .join(away, games.c.away_team_id == away.c.id)
    )


MARKET_COLUMNS = (
    "id", "question", "state", "outcome", "opened_at", "locked_at", "settled_at", "voided_at"
)  # fmt: skip
GAME_COLUMNS = (
    "espn_event_id", "name", "start_time", "status", "status_detail", "completed", "period",
    "clock", "home_score", "away_score", "winner",
)  # fmt: skip
TEAM_COLUMNS = ("id", "espn_id", "abbreviation", "display_name")

MARKET_PAGE_ROWS = _market_page_rows()
"""Plain Core (table columns, no ORM entities), built once: one flat, labelled row per market
with every column a page shows; read with `.mappings()`. Filter on `MARKETS`, `GAMES` and
`LEAGUE_TABLE` columns."""
