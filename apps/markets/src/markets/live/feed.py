"""Publishing what committed transactions changed, and what the services are doing."""

from __future__ import annotations

import asyncio

import structlog

from mainspring import Service, ServiceStatus
from mainspring.realtime import Hub
from markets.api.schemas import GameOut
from markets.db.board import Changes
from markets.live.channels import MARKETS, SERVICES, games
from markets.live.payloads import MarketUpdate, ServiceOut

log = structlog.get_logger("markets.live")


class Feed:
    """The `Announce` of the pollers and the importer: games on ``games:{league}`` (keyed
    by game id), market events on ``markets``.

    Called after the commit: the database is the truth and a channel only news of it, so
    a failed publish is logged, never raised into the writer (an import must not fail for
    it). Clients see what they missed at their next reload or resync.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, changes: Changes) -> None:
        try:
            for game in changes.games:
                channel = games(game.league.code)
                await self.hub.publish(channel, GameOut.of(game), key=str(game.id))
            for change in changes.markets:
                await self.hub.publish(MARKETS, MarketUpdate.of(change))
        except Exception:
            log.exception("live update not published", games=len(changes.games))


class StatusFeed(Service):
    """Publishes each service's state changes on ``services``.

    The supervisor tells `changed` synchronously, where nothing can be awaited; spawning a
    task per change would leave publishes nobody waits for, errors nobody sees and no
    bound. So the latest status of each service waits here (bounded by the number of
    services: a newer status replaces an unpublished one, as the channel's `latest_only`
    policy would anyway) until this supervised service publishes it, and a publish that
    fails is retried by the supervisor's restart, with its backoff.
    """

    name = "status-feed"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._pending: dict[str, ServiceOut] = {}
        self._changed = asyncio.Event()

    def changed(self, status: ServiceStatus) -> None:
        """The runtime's service-change listener."""
        self._pending.pop(status.name, None)  # re-inserted last: the order of changes
        self._pending[status.name] = ServiceOut.of(status)
        self._changed.set()

    async def run(self) -> None:
        while await self._wait():
            self._changed.clear()
            while self._pending:
                name, update = next(iter(self._pending.items()))
                await self.hub.publish(SERVICES, update, key=name)
                if self._pending.get(name) is update:
                    del self._pending[name]

    async def _wait(self) -> bool:
        """Until a change is pending (True) or the service is asked to stop (False)."""
        stop = self.context.stop
        if not self._changed.is_set() and not stop.is_set():
            async with asyncio.TaskGroup() as group:
                waits = {group.create_task(self._changed.wait()), group.create_task(stop.wait())}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for wait in waits:
                    wait.cancel()
        return not stop.is_set()
