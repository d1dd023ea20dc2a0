"""The markets app: one lifespan that opens the database, the HTTP client and the hub of
live channels, applies the migrations, and supervises the importer and one poller per
league, which publish what they change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from mainspring import Runtime, load_settings, setting
from mainspring.observability import instrument
from mainspring.realtime import Hub
from mainspring.resources import Database, HttpClient
from markets import api, live, web
from markets.db.session import upgrade_async
from markets.espn.client import EspnClient
from markets.importer import Importer
from markets.services import SportsService
from markets.settings import MarketsSettings

LEAGUE_START_DELAYS = {"nba": 0.0, "mlb": 3.0}
"""Staggered, so the two pollers do not hit ESPN (and the database) in the same second."""


def create_app(settings: MarketsSettings | None = None) -> FastAPI:
    """The app; `settings` default to the environment, read now, not at import."""
    settings = settings or load_settings(MarketsSettings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(app, settings) as rt:
            await upgrade_async(settings.database_url)
            db = await rt.open(Database(settings.database_url))
            http = await rt.open(HttpClient(timeout=10))
            hub = Hub.from_url(settings.redis_url, policies=live.POLICIES)
            statuses = live.StatusFeed(hub)
            rt.on_service_change(statuses.changed)  # first: every service's start is told
            await rt.open(hub)
            rt.supervise(statuses)
            announce = live.Feed(hub)
            espn = EspnClient(http.client, settings.espn_base_url)
            rt.supervise(
                Importer(db, espn, concurrency=settings.import_concurrency, announce=announce)
            )
            for league, delay in LEAGUE_START_DELAYS.items():
                rt.supervise(
                    partial(SportsService, league, db, espn, settings, announce),
                    name=league,
                    enabled=setting(settings, f"{league}_auto_import_enabled"),
                    start_delay=delay,
                    singleton=True,
                )
            yield

    app = FastAPI(
        title="markets",
        version="0.1.0",
        summary="Sports prediction markets, opened and settled from ESPN scoreboards.",
        lifespan=lifespan,
    )
    app.include_router(api.router)
    app.include_router(live.router)
    app.include_router(web.router)
    return instrument(app)
