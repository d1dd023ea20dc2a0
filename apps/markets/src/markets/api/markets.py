"""Public read API: markets (filtered, paged by cursor) and games."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from mainspring.resources import DbSession
from markets.api.cursor import decode_cursor, encode_cursor
from markets.api.errors import invalid, not_found
from markets.api.market_rows import market_page_json
from markets.api.params import LEAGUE_CHOICES, RowId, UtcQueryTime
from markets.api.schemas import (
    GameDetail,
    GameOut,
    MarketDetail,
    MarketEventOut,
    MarketOut,
    MarketPage,
)
from markets.db.models import Game, Market, MarketEvent, MarketState
from markets.db.queries import (
    GAMES,
    LEAGUE_TABLE,
    MARKET_PAGE_ROWS,
    MARKETS,
    games_with_teams,
    markets_with_games,
)
from markets.espn.model import LEAGUES

router = APIRouter(tags=["markets"])

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@router.get(
    "/markets",
    response_model=MarketPage,
    summary="List markets, oldest first, filtered by league, state and game start",
)
async def list_markets(
    session: DbSession,
    league: Annotated[
        str | None, Query(description="nba or mlb.", json_schema_extra=LEAGUE_CHOICES)
    ] = None,
    state: Annotated[MarketState | None, Query(description="Only markets in this state.")] = None,
    starts_after: Annotated[
        UtcQueryTime | None,
        Query(description="Games starting at or after this time (UTC if naive)."),
    ] = None,
    starts_before: Annotated[
        UtcQueryTime | None, Query(description="Games starting before this time (UTC if naive).")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = DEFAULT_LIMIT,
) -> Response:
    # Core rows serialised once (no docstring: it would become the OpenAPI description).
    query = MARKET_PAGE_ROWS.order_by(MARKETS.c.id).limit(limit + 1)
    if league is not None:
        if league not in LEAGUES:
            known = ", ".join(sorted(LEAGUES))
            raise invalid("query", "league", f"unknown league {league!r}; known: {known}", league)
        query = query.where(LEAGUE_TABLE.c.code == league)
    if state is not None:
        query = query.where(MARKETS.c.state == state)
    if starts_after is not None and starts_before is not None and starts_after >= starts_before:
        raise invalid(
            "query", "starts_before", "starts_before must be after starts_after", starts_before
        )
    if starts_after is not None:
        query = query.where(GAMES.c.start_time >= starts_after)
    if starts_before is not None:
        query = query.where(GAMES.c.start_time < starts_before)
    if cursor is not None:
        try:
            query = query.where(MARKETS.c.id > decode_cursor(cursor))
        except ValueError:
            raise invalid(
                "query", "cursor", "not a cursor this API gave out; pass next_cursor as is", cursor
            ) from None
    found = (await session.execute(query)).mappings().all()
    page = found[:limit]
    next_cursor = encode_cursor(page[-1]["id"]) if len(found) > limit else None
    return Response(market_page_json(page, next_cursor), media_type="application/json")


@router.get(
    "/markets/{market_id}",
    response_model=MarketDetail,
    summary="One market, with its game, teams and every state change",
    responses=not_found("market"),
)
async def get_market(market_id: RowId, session: DbSession) -> MarketDetail:
    market = (await session.scalars(markets_with_games().where(Market.id == market_id))).first()
    if market is None:
        raise HTTPException(404, f"market {market_id} not found")
    events = await session.scalars(
        select(MarketEvent).where(MarketEvent.market_id == market_id).order_by(MarketEvent.id)
    )
    return MarketDetail(
        **MarketOut.fields_of(market), events=[MarketEventOut.model_validate(e) for e in events]
    )


@router.get(
    "/games/{game_id}",
    response_model=GameDetail,
    summary="One game, with its teams, score, status and market",
    responses=not_found("game"),
)
async def get_game(game_id: RowId, session: DbSession) -> GameDetail:
    game = (await session.scalars(games_with_teams().where(Game.id == game_id))).first()
    if game is None:
        raise HTTPException(404, f"game {game_id} not found")
    market_id = await session.scalar(select(Market.id).where(Market.game_id == game_id))
    return GameDetail(**GameOut.of(game).model_dump(), market_id=market_id)
