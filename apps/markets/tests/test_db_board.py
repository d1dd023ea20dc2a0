"""What storing a board changed: each real change reported once, a repeat reports nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mainspring.resources.database import Database
from markets.db.board import Board, Changes, store_board
from markets.db.models import GameStatus, MarketEvent, MarketState
from markets.espn.model import ParsedGame

Boards = Callable[[str], list[ParsedGame]]
Final = Callable[[ParsedGame, int, int], ParsedGame]
T0 = datetime(2025, 6, 4, 16, 0, tzinfo=UTC)
MIXED = "mlb-2025-06-04-mixed-with-postponed"


def moves(changes: Changes) -> list[tuple[int, MarketState]]:
    return [(change.market.id, change.state) for change in changes.markets]


async def store(
    database: Database, games: list[ParsedGame], now: datetime | None = None
) -> tuple[Board, Changes]:
    """Store `games` in one transaction: the board, and its changes loaded in it."""
    async with database.session() as session:
        board = await store_board(session, games, None, now=now)
        return board, await board.changes(session)


async def test_a_board_reports_every_market_it_opened_and_moved_then_nothing_again(
    database: Database, sample_games: Boards
) -> None:
    board = sample_games(MIXED)
    first, changes = await store(database, board, T0)
    async with database.session() as session:
        written = (await session.execute(select(MarketEvent.market_id, MarketEvent.kind))).all()

    assert changes.games == first.changed == []  # a new game is news of its market opening
    assert moves(changes) == first.entered
    assert sorted(first.entered) == sorted((market, kind) for market, kind in written)
    opened = [market for market, state in first.entered if state is MarketState.OPEN]
    assert opened == first.opened
    assert len(opened) == len(board)
    assert {state for _, state in first.entered} == set(MarketState)
    for change in changes.markets:  # loaded for the live payloads, in the transaction
        game = change.market.game
        assert game.league.code == "mlb"
        assert game.home_team.display_name

    again, changes = await store(database, board, T0 + timedelta(hours=1))
    assert not changes
    assert (again.changed, again.opened, again.entered) == ([], [], [])


async def test_a_score_is_reported_when_it_moves_and_a_final_with_its_settlement(
    database: Database, sample_games: Boards, final_game: Final
) -> None:
    board = sample_games(MIXED)
    live = next(n for n, game in enumerate(board) if game.status is GameStatus.IN)
    stored, changes = await store(database, board, T0)
    game_id = stored.games[live].id
    market_id = next(c.market.id for c in changes.markets if c.market.game_id == game_id)

    scored = replace(board[live], home_score=board[live].home_score + 1, status_detail="Bot 8th")
    for expected in ([game_id], []):  # the same news twice: reported once
        result, changes = await store(database, [*board[:live], scored, *board[live + 1 :]])
        assert result.changed == [game.id for game in changes.games] == expected
        assert result.entered == changes.markets == []
    game = result.games[live]
    assert (game.home_score, game.status_detail) == (scored.home_score, "Bot 8th")

    result, changes = await store(database, [final_game(scored, 2, 7)])
    (changed,) = changes.games
    assert (changed.id, changed.completed, changed.away_score) == (game_id, True, 7)
    assert changed.home_team.display_name == scored.home.display_name
    assert moves(changes) == result.entered == [(market_id, MarketState.SETTLED)]
    assert changes.markets[0].market.outcome is not None


async def test_two_writers_storing_the_same_news_at_once_report_it_once(
    database: Database, sample_games: Boards, final_game: Final
) -> None:
    board = sample_games(MIXED)
    live = next(n for n, game in enumerate(board) if game.status is GameStatus.IN)
    await store(database, board, T0)
    news = [*board[:live], final_game(board[live], 2, 7), *board[live + 1 :]]
    both_started = asyncio.Barrier(2)

    async def writer() -> Changes:
        async with database.session() as session:
            await both_started.wait()
            return await (await store_board(session, news, None)).changes(session)

    async with asyncio.timeout(30):
        results = await asyncio.gather(writer(), writer())

    assert sorted(len(changes.games) for changes in results) == [0, 1]
    assert sorted(len(changes.markets) for changes in results) == [0, 1]
    (reported,) = [moves(changes) for changes in results if changes]
    assert [state for _, state in reported] == [MarketState.SETTLED]
