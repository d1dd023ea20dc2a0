"""Markets lock at start, settle once at a completed final, void when called off, never go back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mainspring.resources.database import Database
from markets.db.models import Game, GameStatus, Market, MarketEvent, MarketState, Outcome
from markets.db.store import as_utc, open_market, upsert_game
from markets.db.transitions import apply_game_state
from markets.espn.model import ParsedGame

GameFactory = Callable[..., ParsedGame]
Final = Callable[[ParsedGame, int, int], ParsedGame]
T0 = datetime(2025, 6, 4, 22, 40, tzinfo=UTC)


async def see(db: Database, parsed: ParsedGame, now: datetime = T0) -> list[MarketState]:
    """One poll: store the game, open its market if new, apply its state; the new states."""
    async with db.session() as session:
        game = await upsert_game(session, parsed, now=now)
        await open_market(session, game, None, now=now)
        return [event.kind for event in await apply_game_state(session, game, now=now)]


async def market(db: Database) -> Market:
    async with db.session() as session:
        return (await session.scalars(select(Market))).one()


async def history(db: Database) -> list[tuple[MarketState | None, MarketState]]:
    async with db.session() as session:
        events = await session.scalars(select(MarketEvent).order_by(MarketEvent.id))
        return [(e.from_state, e.kind) for e in events]


async def test_a_scheduled_game_leaves_its_market_open_even_past_its_start(
    database: Database, make_game: GameFactory
) -> None:
    assert await see(database, make_game(), now=T0 + timedelta(hours=2)) == []
    assert (await market(database)).state == MarketState.OPEN


async def test_the_market_locks_once_when_the_game_starts(
    database: Database, make_game: GameFactory
) -> None:
    await see(database, make_game())
    live = make_game(status=GameStatus.IN, home_score=1)
    started = T0 + timedelta(minutes=5)
    assert await see(database, live, now=started) == [MarketState.LOCKED]
    assert await see(database, live, now=started + timedelta(minutes=1)) == []

    locked = await market(database)
    assert locked.state == MarketState.LOCKED
    assert locked.locked_at is not None
    assert as_utc(locked.locked_at) == started
    assert await history(database) == [
        (None, MarketState.OPEN),
        (MarketState.OPEN, MarketState.LOCKED),
    ]


async def test_a_completed_game_settles_its_market_once_with_the_winner(
    database: Database, make_game: GameFactory, final_game: Final
) -> None:
    await see(database, make_game(status=GameStatus.IN))
    done = final_game(make_game(), 3, 5)
    assert await see(database, done) == [MarketState.SETTLED]
    assert await see(database, done) == []

    settled = await market(database)
    assert (settled.state, settled.outcome) == (MarketState.SETTLED, Outcome.AWAY)
    assert settled.settled_at is not None
    async with database.session() as session:
        event = (await session.scalars(select(MarketEvent).order_by(MarketEvent.id.desc()))).first()
    assert event is not None
    assert event.detail == {
        "status": "post",
        "status_detail": "Final",
        "home_score": 3,
        "away_score": 5,
        "winner": "away",
    }


async def test_a_final_seen_while_the_market_was_open_locks_then_settles(
    database: Database, make_game: GameFactory, final_game: Final
) -> None:
    assert await see(database, final_game(make_game(), 4, 1)) == [
        MarketState.LOCKED,
        MarketState.SETTLED,
    ]
    assert (await market(database)).outcome == Outcome.HOME


@pytest.mark.parametrize("completed", [False, True])
async def test_a_finished_game_without_a_winner_only_locks(
    database: Database, make_game: GameFactory, completed: bool
) -> None:
    unsure = make_game(status=GameStatus.POST, status_detail="Final", completed=completed)
    assert await see(database, unsure) == [MarketState.LOCKED]
    assert (await market(database)).state == MarketState.LOCKED


async def test_a_suspended_game_keeps_its_market_locked_until_it_completes(
    database: Database, make_game: GameFactory, final_game: Final
) -> None:
    suspended = make_game(status=GameStatus.SUSPENDED, period=7, home_score=3, away_score=3)
    assert await see(database, suspended) == [MarketState.LOCKED]
    assert await see(database, suspended) == []
    assert (await market(database)).state == MarketState.LOCKED
    assert await see(database, final_game(make_game(), 4, 3)) == [MarketState.SETTLED]


@pytest.mark.parametrize("status", [GameStatus.POSTPONED, GameStatus.CANCELED])
@pytest.mark.parametrize("started", [False, True])
async def test_a_called_off_game_voids_its_market_and_it_is_never_settled(
    database: Database,
    make_game: GameFactory,
    final_game: Final,
    status: GameStatus,
    started: bool,
) -> None:
    before = MarketState.OPEN
    if started:
        await see(database, make_game(status=GameStatus.IN))
        before = MarketState.LOCKED
    assert await see(database, make_game(status=status)) == [MarketState.VOIDED]
    assert await see(database, final_game(make_game(), 2, 1)) == []

    voided = await market(database)
    assert (voided.state, voided.outcome) == (MarketState.VOIDED, None)
    assert voided.voided_at is not None
    assert (await history(database))[-1] == (before, MarketState.VOIDED)


async def test_a_settled_market_is_never_voided_or_reopened(
    database: Database, make_game: GameFactory, final_game: Final
) -> None:
    await see(database, final_game(make_game(), 2, 1))
    for later in (GameStatus.CANCELED, GameStatus.PRE, GameStatus.IN):
        assert await see(database, make_game(status=later)) == []
    assert (await market(database)).state == MarketState.SETTLED
    assert len(await history(database)) == 3


async def test_two_instances_settling_the_same_final_settle_once(
    database: Database, make_game: GameFactory, final_game: Final
) -> None:
    await see(database, make_game(status=GameStatus.IN))
    done = final_game(make_game(), 6, 2)
    both_in_a_transaction = asyncio.Barrier(2)

    async def instance() -> list[MarketEvent]:
        async with database.session() as session:
            (await session.scalars(select(Game))).one()
            await both_in_a_transaction.wait()
            game = await upsert_game(session, done)
            return await apply_game_state(session, game)

    async with asyncio.timeout(30):
        results = await asyncio.gather(instance(), instance())

    assert sorted(len(events) for events in results) == [0, 1]
    assert [kind for _, kind in await history(database)].count(MarketState.SETTLED) == 1
    assert (await market(database)).outcome == Outcome.HOME


async def test_recorded_postponed_and_suspended_games(
    database: Database, sample_games: Callable[[str], list[ParsedGame]]
) -> None:
    boards = sample_games("mlb-2025-06-04-mixed-with-postponed") + sample_games(
        "mlb-2025-06-06-suspended-and-extra-innings"
    )
    for parsed in boards:
        await see(database, parsed)

    async with database.session() as session:
        rows = await session.execute(
            select(Game.espn_event_id, Game.status, Market.state).join(Market)
        )
        states = {event_id: (status, state) for event_id, status, state in rows}
    assert states["401695827"] == (GameStatus.POSTPONED, MarketState.VOIDED)
    suspended = [s for s in states.values() if s[0] == GameStatus.SUSPENDED]
    assert suspended == [(GameStatus.SUSPENDED, MarketState.LOCKED)]
    finals = [s for s in states.values() if s[0] == GameStatus.POST]
    assert finals
    assert all(state == MarketState.SETTLED for _, state in finals)
