"""`SportsService`: one league's pollers, the schedule loop and the score loop.

The schedule loop opens a market for every upcoming game it sees; the score
loop updates scores and moves markets along (lock at start, settle when final,
void when postponed). Every write is idempotent or a conditional transition, so
two instances, or a restart in the middle of a tick, never apply anything twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import exists, select

from mainspring import Service, loop
from mainspring.resources import Database
from markets.db.board import Announce, store_board
from markets.db.models import Game, GameStatus, League, MarketState
from markets.espn.client import EspnClient
from markets.espn.model import ParsedGame
from markets.settings import MarketsSettings

LIVE_SOON = timedelta(minutes=15)
"""A game this close to its start already makes the score loop poll at the live pace."""


class SportsService(Service):
    def __init__(
        self,
        league: str,
        db: Database,
        espn: EspnClient,
        settings: MarketsSettings,
        announce: Announce | None = None,
    ) -> None:
        self.league = league
        self.db = db
        self.espn = espn
        self.settings = settings
        self.announce = announce
        """Told what each stored board changed, once it is committed (the live channels)."""
        self.live = False

    def now(self) -> datetime:
        """Wall-clock time from the runtime's clock, so tests can move it."""
        return datetime.fromtimestamp(self.context.clock.time(), UTC)

    @loop(every=lambda self: self.settings.schedule_interval, timeout=300)
    async def schedule(self) -> None:
        today = self.now().date()
        days = [today + timedelta(days=n) for n in range(self.settings.lookahead_days + 1)]
        opened = await self._poll(days)
        self.log.info("schedule refreshed", days=len(days), markets_opened=opened)

    @loop(
        every=lambda self: (
            self.settings.scores_live_interval if self.live else self.settings.scores_idle_interval
        ),
        timeout=120,
    )
    async def scores(self) -> None:
        # ESPN lists games under their US date: an evening game is on yesterday's board in UTC.
        today = self.now().date()
        await self._poll([today - timedelta(days=1), today])

    async def _poll(self, days: Sequence[date]) -> int:
        """Fetch `days`, store what came back, and re-decide the pace; markets opened.

        A day that fails is logged and left for the next tick; when every day fails
        the tick fails, so the loop backs off and /debug/status shows the error.
        """
        results = await self.espn.games_for_dates(
            self.league, days, concurrency=self.settings.import_concurrency
        )
        failures = {day: r for day, r in results.items() if isinstance(r, Exception)}
        for day, error in failures.items():
            self.log.warning("scoreboard unavailable", day=day.isoformat(), error=str(error))
        opened = 0
        for games in results.values():
            if not isinstance(games, Exception):
                opened += await self._store(games)
        self.live = await self._has_live_games()
        if failures and len(failures) == len(results):
            raise next(iter(failures.values()))
        return opened

    async def _store(self, games: Sequence[ParsedGame]) -> int:
        """A day's board in one transaction of a few multi-row statements, announced once
        committed; markets opened. Concurrent writers (the other loop, another worker)
        take turns on the league's lock, so they cannot deadlock."""
        async with self.db.session() as session:
            board = await store_board(session, games, None)
            changes = await board.changes(session)
        for change in changes.markets:
            if change.state is not MarketState.OPEN:
                game = change.market.game
                self.log.info(
                    "market moved",
                    market_id=change.market.id,
                    state=change.state.value,
                    game=game.name,
                    espn_event_id=game.espn_event_id,
                )
        if self.announce is not None and changes:
            await self.announce(changes)
        return len(board.opened)

    async def _has_live_games(self) -> bool:
        now = self.now()
        soon = (
            (Game.status == GameStatus.PRE)
            & (Game.start_time <= now + LIVE_SOON)
            & (Game.start_time >= now - timedelta(hours=12))
        )
        query = select(
            exists()
            .where(Game.league_id == League.id, League.code == self.league)
            .where((Game.status == GameStatus.IN) | soon)
        )
        async with self.db.session() as session:
            return bool(await session.scalar(query))
