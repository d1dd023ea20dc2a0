"""Loading markets and games with what the API and the dashboard show of them."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import contains_eager, joinedload

from markets.db.models import Game, Market


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
