"""Storing a board (the games ESPN listed for some days) in one transaction, and telling
what it changed.

The pollers and the importer store boards the same way, and both tell the live channels
what changed: this is the one place that finds out. Only what this transaction really
changed is reported (a game whose score or status moved, a market opened or moved), so
storing the same board twice reports nothing the second time, and two writers storing it
at once report each change once: they take turns (`serialize_league_writes`) before
reading the rows they are about to overwrite.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from markets.db.models import Game, Market, MarketState
from markets.db.queries import games_with_teams, markets_with_games
from markets.db.store import (
    GAME_FIELDS,
    chunked,
    league_id,
    open_markets,
    serialize_league_writes,
    upsert_games,
)
from markets.db.transitions import apply_games_state
from markets.espn.model import ParsedGame

SHOWN = tuple(name for name in GAME_FIELDS if name != "updated_at")
"""A game changed when one of these did; a sighting alone moves only ``updated_at``."""


@dataclass(frozen=True)
class MarketChange:
    state: MarketState
    """The state the market entered: ``open`` when this transaction created it."""
    market: Market
    """As the transaction left it (possibly further along than `state`, when one
    transaction moved it twice), with its game, league and teams loaded."""


@dataclass(frozen=True)
class Changes:
    games: list[Game] = field(default_factory=list)
    """Games that existed before and changed (score, status, clock...), teams loaded."""
    markets: list[MarketChange] = field(default_factory=list)
    """Every market opened or moved, in the order it happened."""

    def __bool__(self) -> bool:
        return bool(self.games or self.markets)


Announce = Callable[[Changes], Awaitable[None]]
"""Told what a committed transaction changed: the live channels, in the app."""


@dataclass(frozen=True)
class Board:
    games: list[Game]
    """Every game of the board, as stored."""
    changed: list[int]
    """The games that existed before and changed (score, status, clock...)."""
    opened: list[int]
    """The markets this transaction created."""
    entered: list[tuple[int, MarketState]]
    """(market, state entered) for every market opened or moved, in order."""

    async def changes(self, session: AsyncSession) -> Changes:
        """The changes as the live channels show them, loaded in the transaction that
        made them (no query when nothing changed). A separate step, so that a bulk import
        nobody follows does not pay for it."""
        if not self.changed and not self.entered:
            return Changes()
        return await _load(session, self.changed, self.entered)


async def store_board(
    session: AsyncSession,
    games: Sequence[ParsedGame],
    import_run_id: int | None,
    *,
    now: datetime | None = None,
) -> Board:
    """Upsert the games, open their missing markets and move their markets along, in the
    caller's transaction; what changed, to load with `Board.changes` before the commit
    and announce after it."""
    leagues = {code: await league_id(session, code) for code in {g.league for g in games}}
    for league in sorted(leagues.values()):
        await serialize_league_writes(session, league)
    before = await _shown(session, [(leagues[g.league], g.espn_event_id) for g in games])
    stored = await upsert_games(session, games, now=now)
    opened = await open_markets(session, stored, import_run_id, now=now)
    moved = await apply_games_state(session, stored, now=now)
    changed = [
        game.id
        for game in stored
        if (old := before.get((game.league_id, game.espn_event_id))) is not None
        and old != tuple(getattr(game, name) for name in SHOWN)
    ]
    entered = [(market_id, MarketState.OPEN) for market_id in opened]
    entered += [(event.market_id, event.kind) for event in moved]
    return Board(stored, changed, opened, entered)


async def _shown(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> dict[tuple[int, str], tuple[Any, ...]]:
    """(league id, ESPN event id) -> the `SHOWN` fields of the games that exist."""
    columns = [getattr(Game, name) for name in SHOWN]
    found: dict[tuple[int, str], tuple[Any, ...]] = {}
    for chunk in chunked(list(dict.fromkeys(keys))):
        rows = await session.execute(
            select(Game.league_id, Game.espn_event_id, *columns).where(
                tuple_(Game.league_id, Game.espn_event_id).in_(chunk)
            )
        )
        found.update({(row[0], row[1]): tuple(row[2:]) for row in rows})
    return found


async def _load(
    session: AsyncSession, changed: list[int], entered: list[tuple[int, MarketState]]
) -> Changes:
    """What the live channels show of the changes: games and markets with their teams."""
    fresh = {"populate_existing": True}  # the session already holds these games, unloaded
    games: dict[int, Game] = {}
    for chunk in chunked(changed):
        found = await session.scalars(
            games_with_teams().where(Game.id.in_(chunk)), execution_options=fresh
        )
        games.update({game.id: game for game in found.unique()})
    markets: dict[int, Market] = {}
    for chunk in chunked(list({market_id for market_id, _ in entered})):
        loaded = await session.scalars(
            markets_with_games().where(Market.id.in_(chunk)), execution_options=fresh
        )
        markets.update({market.id: market for market in loaded.unique()})
    return Changes(
        games=[games[game_id] for game_id in changed],
        markets=[MarketChange(state, markets[market_id]) for market_id, state in entered],
    )
