"""Games are upserted and markets opened once, however often and however concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mainspring.resources.database import Database
from markets.db.models import (
    Game,
    GameStatus,
    League,
    Market,
    MarketEvent,
    MarketState,
    SportsImport,
    Team,
)
from markets.db.store import as_utc, ensure_leagues, open_market, upsert_game
from markets.espn.model import ParsedGame, ParsedTeam
from markets.importer import create_import

GameFactory = Callable[..., ParsedGame]
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


async def count(db: Database, model: type[object]) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_ensure_leagues_adds_nothing_after_the_migration_seeded_them(
    database: Database,
) -> None:
    async with database.session() as session:
        await ensure_leagues(session)
        await ensure_leagues(session)
    assert await count(database, League) == 2


async def test_upsert_game_inserts_then_updates_status_and_score(
    database: Database, make_game: GameFactory
) -> None:
    async with database.session() as session:
        first = await upsert_game(session, make_game(), now=T0)
        assert (first.status, first.home_score) == (GameStatus.PRE, 0)

    later = T0 + timedelta(hours=1)
    live = make_game(status=GameStatus.IN, status_detail="Top 3rd", period=3, home_score=2)
    async with database.session() as session:
        again = await upsert_game(session, live, now=later)
        assert again.id == first.id
        assert (again.status, again.period, again.home_score) == (GameStatus.IN, 3, 2)

    async with database.session() as session:
        stored = await session.get_one(Game, first.id)
        assert (stored.status, stored.status_detail, stored.home_score) == (
            GameStatus.IN,
            "Top 3rd",
            2,
        )
        assert as_utc(stored.start_time) == make_game().start_time
        assert as_utc(stored.updated_at) == later
    assert await count(database, Game) == 1
    assert await count(database, Team) == 2


async def test_a_team_is_one_row_whose_names_follow_espn(
    database: Database, make_game: GameFactory
) -> None:
    renamed = ParsedTeam(espn_id="28", abbreviation="MIA", display_name="Miami Fish")
    async with database.session() as session:
        await upsert_game(session, make_game())
        await upsert_game(session, make_game(espn_event_id="2", home=renamed))
    async with database.session() as session:
        names = (await session.scalars(select(Team.display_name).order_by(Team.id))).all()
    assert sorted(names) == ["Colorado Rockies", "Miami Fish"]


async def test_an_unknown_league_is_refused(database: Database, make_game: GameFactory) -> None:
    async with database.session() as session:
        with pytest.raises(LookupError, match="'nhl'"):
            await upsert_game(session, make_game(league="nhl"))


async def test_open_market_twice_opens_one_market(
    database: Database, make_game: GameFactory
) -> None:
    run_id = await create_import(
        database, "mlb", date(2025, 6, 1), date(2025, 6, 1), requested_by="admin"
    )
    async with database.session() as session:
        game = await upsert_game(session, make_game())
        assert await open_market(session, game, run_id, now=T0) is True
    async with database.session() as session:
        game = await upsert_game(session, make_game())
        assert await open_market(session, game, None, now=T0 + timedelta(hours=6)) is False

    async with database.session() as session:
        market = (await session.scalars(select(Market))).one()
        seen = (await session.scalars(select(SportsImport))).one()
        events = (await session.scalars(select(MarketEvent))).all()
    assert (market.game_id, market.state, market.question) == (
        game.id,
        MarketState.OPEN,
        "Who wins COL @ MIA?",
    )
    assert (seen.market_id, seen.espn_event_id) == (market.id, "401695827")
    assert seen.import_run_id == run_id
    assert (as_utc(seen.first_seen), as_utc(seen.last_seen)) == (T0, T0 + timedelta(hours=6))
    assert [(e.market_id, e.kind, e.from_state) for e in events] == [
        (market.id, MarketState.OPEN, None)
    ]


async def test_two_concurrent_openers_create_one_market(
    database: Database, make_game: GameFactory
) -> None:
    async with database.session() as session:
        game_id = (await upsert_game(session, make_game())).id
    both_in_a_transaction = asyncio.Barrier(2)

    async def instance() -> bool:
        async with database.session() as session:
            game = await session.get_one(Game, game_id)
            await both_in_a_transaction.wait()
            return await open_market(session, game, None)

    async with asyncio.timeout(30):
        results = await asyncio.gather(instance(), instance())

    assert sorted(results) == [False, True]
    assert await count(database, Market) == 1
    assert await count(database, SportsImport) == 1
    assert await count(database, MarketEvent) == 1


async def test_a_recorded_board_imported_twice_gives_one_market_per_event(
    database: Database, sample_games: Callable[[str], list[ParsedGame]]
) -> None:
    games = sample_games("mlb-2025-06-05-doubleheader-makeup-scheduled")
    opened = []
    for _ in range(2):
        async with database.session() as session:
            for parsed in games:
                opened.append(await open_market(session, await upsert_game(session, parsed), None))

    event_ids = {g.espn_event_id for g in games}
    assert {"401778098", "401695839"} <= event_ids
    assert opened.count(True) == len(event_ids) == len(games)
    assert await count(database, Market) == len(games)
    assert await count(database, SportsImport) == len(games)
