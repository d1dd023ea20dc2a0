"""A day's board is stored in a few statements, with the same outcome as game by game."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from mainspring.resources.database import Database
from markets.db.models import (
    Game,
    GameStatus,
    Market,
    MarketEvent,
    MarketState,
    Outcome,
    SportsImport,
    Team,
)
from markets.db.store import as_utc, open_market, open_markets, upsert_game, upsert_games
from markets.db.transitions import apply_game_state, apply_games_state
from markets.espn.model import ParsedGame
from markets.importer import create_import

Board = Callable[[str], list[ParsedGame]]
Final = Callable[[ParsedGame, int, int], ParsedGame]
T0 = datetime(2025, 6, 4, 16, 0, tzinfo=UTC)
MIXED = "mlb-2025-06-04-mixed-with-postponed"
POSTPONED = "401695827"
History = dict[str, list[tuple[MarketState | None, MarketState]]]


async def count(db: Database, model: type[object]) -> int:
    async with db.session() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


def scheduled(game: ParsedGame) -> ParsedGame:
    return replace(
        game, status=GameStatus.PRE, completed=False, winner=None, home_score=0, away_score=0
    )


async def test_upsert_games_inserts_a_board_then_updates_it_in_place(
    database: Database, sample_games: Board, final_game: Final
) -> None:
    board = sample_games(MIXED)
    async with database.session() as session:
        first = await upsert_games(session, [scheduled(game) for game in board], now=T0)
    assert [game.espn_event_id for game in first] == [game.espn_event_id for game in board]
    assert all(game.status == GameStatus.PRE for game in first)

    later = T0 + timedelta(hours=6)
    live = board[7]
    assert live.status == GameStatus.IN
    # The same event twice in one batch: one row, the last copy wins.
    batch = [*board, final_game(live, 2, 7)]
    async with database.session() as session:
        second = await upsert_games(session, batch, now=later)

    assert [game.id for game in second] == [game.id for game in first]
    by_event = {game.espn_event_id: game for game in second}
    for parsed in board:
        stored = by_event[parsed.espn_event_id]
        if parsed is live:
            assert (stored.completed, stored.winner, stored.away_score) == (True, Outcome.AWAY, 7)
        else:
            assert (stored.status, stored.home_score, stored.away_score, stored.winner) == (
                parsed.status,
                parsed.home_score,
                parsed.away_score,
                parsed.winner,
            )
        assert as_utc(stored.updated_at) == later
    assert await count(database, Game) == len(board)
    teams = {team.espn_id for game in board for team in (game.home, game.away)}
    assert await count(database, Team) == len(teams)


async def test_open_markets_twice_opens_each_market_once(
    database: Database, sample_games: Board
) -> None:
    board = sample_games(MIXED)
    run_id = await create_import(
        database, "mlb", date(2025, 6, 4), date(2025, 6, 4), requested_by="admin"
    )
    async with database.session() as session:
        games = await upsert_games(session, board, now=T0)
        assert len(await open_markets(session, games, run_id, now=T0)) == len(board)
    later = T0 + timedelta(hours=6)
    async with database.session() as session:
        games = await upsert_games(session, board, now=later)
        assert await open_markets(session, [*games, games[0]], None, now=later) == []

    assert await count(database, Market) == len(board)
    async with database.session() as session:
        sightings = (await session.scalars(select(SportsImport))).all()
        events = (await session.scalars(select(MarketEvent))).all()
        markets = {m.id: m.game_id for m in await session.scalars(select(Market))}
    assert sorted(e.espn_event_id for e in sightings) == sorted(g.espn_event_id for g in board)
    assert all(e.import_run_id == run_id for e in sightings)
    assert all(as_utc(e.first_seen) == T0 and as_utc(e.last_seen) == later for e in sightings)
    assert {e.market_id for e in sightings} == set(markets)
    assert sorted((e.market_id, e.kind, e.from_state) for e in events) == [
        (market_id, MarketState.OPEN, None) for market_id in sorted(markets)
    ]


def sightings(board: list[ParsedGame], final_game: Final) -> list[list[ParsedGame]]:
    """Three polls of the mixed board, so that every rule fires: first all scheduled but
    one final and the postponed game already under way (so locked first, later settled
    and voided from locked), then as recorded plus one live game finished (open -> final),
    then the same again (nothing moves)."""
    early = [
        replace(game, status=GameStatus.IN, completed=False, winner=None)
        if game is board[0] or game.espn_event_id == POSTPONED
        else scheduled(game)
        for game in board
    ]
    final = [final_game(game, 1, 4) if game is board[7] else game for game in board]
    return [early, final, final]


def renumbered(games: list[ParsedGame], suffix: str) -> list[ParsedGame]:
    return [replace(game, espn_event_id=game.espn_event_id + suffix) for game in games]


async def history(db: Database, suffix: str) -> History:
    """Each market's (from, to) steps and final state, by ESPN event id without `suffix`."""
    steps: History = defaultdict(list)
    async with db.session() as session:
        rows = await session.execute(
            select(Game.espn_event_id, MarketEvent.from_state, MarketEvent.kind)
            .join(Market, Market.game_id == Game.id)
            .join(MarketEvent, MarketEvent.market_id == Market.id)
            .where(Game.espn_event_id.endswith(suffix))
            .order_by(MarketEvent.id)
        )
        for event_id, source, target in rows:
            steps[event_id.removesuffix(suffix)].append((source, target))
    return dict(steps)


async def final_states(db: Database, suffix: str) -> dict[str, tuple[MarketState, Outcome | None]]:
    async with db.session() as session:
        rows = await session.execute(
            select(Game.espn_event_id, Market.state, Market.outcome)
            .join(Market, Market.game_id == Game.id)
            .where(Game.espn_event_id.endswith(suffix))
        )
        return {event_id.removesuffix(suffix): (s, o) for event_id, s, o in rows}


async def test_batch_transitions_match_the_game_by_game_ones_on_a_mixed_board(
    database: Database, sample_games: Board, final_game: Final
) -> None:
    polls = sightings(sample_games(MIXED), final_game)
    batch_moves, single_moves = [], []
    for n, board in enumerate(polls):
        now = T0 + timedelta(hours=n)
        async with database.session() as session:
            games = await upsert_games(session, renumbered(board, "-b"), now=now)
            await open_markets(session, games, None, now=now)
            events = await apply_games_state(session, games, now=now)
            batch_moves.append(sorted((e.market_id, e.kind) for e in events))
        moved = []
        async with database.session() as session:
            for parsed in renumbered(board, "-s"):
                game = await upsert_game(session, parsed, now=now)
                await open_market(session, game, None, now=now)
                moved += [(e.market_id, e.kind) for e in await apply_game_state(session, game)]
        single_moves.append(sorted(moved))

    batch, single = await history(database, "-b"), await history(database, "-s")
    assert batch == single
    assert await final_states(database, "-b") == await final_states(database, "-s")
    assert [len(moves) for moves in batch_moves] == [len(moves) for moves in single_moves]
    assert batch_moves[-1] == []
    first, live = polls[1][0].espn_event_id, polls[1][7].espn_event_id
    assert batch[first][1:] == [
        (MarketState.OPEN, MarketState.LOCKED),
        (MarketState.LOCKED, MarketState.SETTLED),
    ]
    assert batch[live][1:] == batch[first][1:]
    assert batch[POSTPONED][1:] == [
        (MarketState.OPEN, MarketState.LOCKED),
        (MarketState.LOCKED, MarketState.VOIDED),
    ]
    states = await final_states(database, "-b")
    assert states[live] == (MarketState.SETTLED, Outcome.AWAY)
    assert {state for state, _ in states.values()} == {
        MarketState.SETTLED,
        MarketState.LOCKED,
        MarketState.VOIDED,
    }


async def test_a_called_off_game_voids_straight_from_open_in_a_batch(
    database: Database, sample_games: Board
) -> None:
    board = sample_games(MIXED)
    async with database.session() as session:
        games = await upsert_games(session, [scheduled(game) for game in board], now=T0)
        await open_markets(session, games, None, now=T0)
    async with database.session() as session:
        games = await upsert_games(session, board, now=T0)
        events = await apply_games_state(session, games, now=T0)
    voided = [e for e in events if e.kind == MarketState.VOIDED]
    assert [e.from_state for e in voided] == [MarketState.OPEN]
    assert voided[0].detail["status"] == GameStatus.POSTPONED.value


async def test_two_concurrent_batch_writers_settle_each_market_once(
    database: Database, sample_games: Board
) -> None:
    board = sample_games(MIXED)
    finals = [game for game in board if game.completed and game.winner is not None]
    async with database.session() as session:
        live = [replace(game, status=GameStatus.IN, completed=False, winner=None) for game in board]
        games = await upsert_games(session, live, now=T0)
        await open_markets(session, games, None, now=T0)
        await apply_games_state(session, games, now=T0)
    both_in_a_transaction = asyncio.Barrier(2)

    async def instance() -> list[MarketEvent]:
        async with database.session() as session:
            (await session.scalars(select(Game))).all()
            await both_in_a_transaction.wait()
            return await apply_games_state(session, await upsert_games(session, board))

    async with asyncio.timeout(30):
        results = await asyncio.gather(instance(), instance())

    moves = [event for events in results for event in events]
    assert sorted(len(events) for events in results) == [0, len(finals) + 1]
    settled = [event.market_id for event in moves if event.kind == MarketState.SETTLED]
    assert len(settled) == len(set(settled)) == len(finals)
    async with database.session() as session:
        kinds = (await session.scalars(select(MarketEvent.kind))).all()
    assert kinds.count(MarketState.SETTLED) == len(finals)
    assert kinds.count(MarketState.VOIDED) == 1
