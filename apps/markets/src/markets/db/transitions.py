"""A market follows its game: open -> locked -> settled, or -> voided.

The rules, from the game's latest ESPN state (see shared/fixtures/FORMAT.md):

- **lock** (from open) once the game has begun: status ``in``, ``post`` or ``suspended``,
  or completed. A game still ``pre`` after its scheduled start stays open: ESPN, not our
  clock, says when it began.
- **settle** (from locked, with ``outcome`` = the winner) only when ESPN says ``completed``
  and the parser found a winner. ``post`` alone is not enough. A completed game whose
  market was still open is locked first, so the audit trail shows both steps.
- **void** (from open or locked) when the game is ``postponed`` or ``canceled``: it will
  never complete (a makeup game gets a new ESPN event id, hence a new market).
- **suspended** games will resume another day ("Will resume at ..."), so their market stays
  locked until they complete.
- a completed game without a winner (ESPN's flag disagreeing with the score) is only
  locked: settling on doubtful data cannot be undone.
- settled and voided are final: nothing leaves them.

Each step is one conditional ``UPDATE markets ... WHERE game_id IN (...) AND state IN
(:from...) RETURNING id, game_id`` for all the games of a batch, in the order lock, settle,
void, and a `MarketEvent` is written for each row that came back, in the caller's
transaction. Two instances applying the same state therefore change a market once: the
second UPDATE waits for the first to commit (a row lock on PostgreSQL, the write lock on
SQLite), re-checks the state and then matches nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import case, update
from sqlalchemy.ext.asyncio import AsyncSession

from markets.db.models import Game, GameStatus, Market, MarketEvent, MarketState
from markets.db.store import chunked

log = structlog.get_logger("markets.db")

BEGUN = frozenset({GameStatus.IN, GameStatus.POST, GameStatus.SUSPENDED})
CALLED_OFF = frozenset({GameStatus.POSTPONED, GameStatus.CANCELED})


async def apply_game_state(
    session: AsyncSession, game: Game, *, now: datetime | None = None
) -> list[MarketEvent]:
    """`apply_games_state` for one game."""
    return await apply_games_state(session, [game], now=now)


async def apply_games_state(
    session: AsyncSession, games: Sequence[Game], *, now: datetime | None = None
) -> list[MarketEvent]:
    """Move the games' markets as their states require; the events written (often none).

    Lock, then settle, then void, each one ``UPDATE`` for all the games it concerns
    (per `CHUNK`), then one insert of the events: lock before settle, so that a final
    seen while its market was open is locked and settled in this one call.
    """
    now = now or datetime.now(UTC)
    unique = list({game.id: game for game in games}.values())
    rules = {game.id: _rule(game) for game in unique}
    settle = [game for game in unique if rules[game.id] is MarketState.SETTLED]
    lock = [game for game in unique if rules[game.id] in (MarketState.LOCKED, MarketState.SETTLED)]
    void = [game for game in unique if rules[game.id] is MarketState.VOIDED]
    events = [
        *await _transition(session, lock, MarketState.LOCKED, now, locked_at=now),
        *await _transition(
            session,
            settle,
            MarketState.SETTLED,
            now,
            settled_at=now,
            outcome=case(
                {game.id: game.winner.value for game in settle if game.winner is not None},
                value=Market.game_id,
            ),
        ),
        *await _transition(session, void, MarketState.VOIDED, now, voided_at=now),
    ]
    if events:
        session.add_all(events)
        await session.flush()
    return events


def _rule(game: Game) -> MarketState | None:
    """Where the game's state takes its market: settled (by way of locked), voided, locked."""
    if game.completed and game.winner is not None:
        return MarketState.SETTLED
    if game.status in CALLED_OFF:
        return MarketState.VOIDED
    if game.completed or game.status in BEGUN:
        return MarketState.LOCKED
    return None


SOURCES = {
    MarketState.LOCKED: (MarketState.OPEN,),
    MarketState.SETTLED: (MarketState.LOCKED,),
    MarketState.VOIDED: (MarketState.OPEN, MarketState.LOCKED),
}
"""The states each target is reached from."""


async def _transition(
    session: AsyncSession,
    games: Sequence[Game],
    target: MarketState,
    now: datetime,
    **values: Any,
) -> list[MarketEvent]:
    """Move the games' markets that are in a source state of `target`; their events, in
    the games' order. The state a market left is told by ``locked_at``, which only the
    lock sets: an UPDATE's RETURNING sees the new row only."""
    by_id = {game.id: game for game in games}
    changed: list[tuple[int, int, datetime | None]] = []
    for chunk in chunked(list(by_id)):
        result = await session.execute(
            update(Market)
            .where(Market.game_id.in_(chunk), Market.state.in_(SOURCES[target]))
            .values(state=target, **values)
            .returning(Market.id, Market.game_id, Market.locked_at)
        )
        changed.extend(result)
    order = {game_id: n for n, game_id in enumerate(by_id)}
    events = []
    for market_id, game_id, locked_at in sorted(changed, key=lambda row: order[row[1]]):
        game = by_id[game_id]
        sources = SOURCES[target]
        was_locked = locked_at is not None and MarketState.LOCKED in sources
        source = MarketState.LOCKED if was_locked else sources[0]
        events.append(
            MarketEvent(
                market_id=market_id,
                kind=target,
                from_state=source,
                detail={
                    "status": game.status.value,
                    "status_detail": game.status_detail,
                    "home_score": game.home_score,
                    "away_score": game.away_score,
                    "winner": game.winner.value if game.winner else None,
                },
                at=now,
            )
        )
        log.info(
            "market changed",
            market_id=market_id,
            game_id=game_id,
            from_state=source.value,
            to_state=target.value,
        )
    return events
