"""An example service that exercises the runtime: resources, loops, a singleton, restarts.

Run it with ``make demo`` (or ``uv run mainspring run examples.pollers:app``), then
look at it with ``uv run mainspring status``.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic_settings import SettingsConfigDict
from sqlalchemy import DateTime, Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mainspring import MainspringSettings, Runtime, Service, load_settings, loop, setting, use
from mainspring.observability import instrument
from mainspring.resources import Database, DbSession, HttpClient
from mainspring.urls import DatabaseUrl, HttpUrl


class Settings(MainspringSettings):
    """`EXAMPLE_*` variables; the runtime's own keep their `MAINSPRING_*` names."""

    model_config = SettingsConfigDict(env_prefix="EXAMPLE_", extra="ignore")

    database_url: DatabaseUrl = "sqlite:///./var/example.db"
    weather_url: HttpUrl | None = None
    """An upstream to poll; the weather service stays disabled without it."""


class Base(DeclarativeBase):
    pass


class Heartbeat(Base):
    """One row per tick of the leader, stamped with the lease's fencing token."""

    __tablename__ = "heartbeats"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    fencing_token: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Leader(Service):
    """Runs in one process of the deployment at a time (a singleton)."""

    name = "leader"

    def __init__(self, db: Database) -> None:
        self.db = db

    @loop(every=10)
    async def heartbeat(self) -> None:
        self.log.info("writing heartbeat", lease_term=self.fencing_token)
        async with self.db.session() as session:
            session.add(
                Heartbeat(
                    holder=self.context.status.lease_holder or "?",
                    fencing_token=self.fencing_token,
                    at=datetime.now(UTC),
                )
            )


class Scoreboard(Service):
    """An adaptive loop: fast while something is "live", slow otherwise."""

    name = "scoreboard"

    def __init__(self) -> None:
        self.live = False
        self.checks = 0

    @loop(every=lambda self: 2 if self.live else 15, jitter=0.5, timeout=5)
    async def scores(self) -> None:
        self.checks += 1
        self.live = random.random() < 0.5


class Flaky(Service):
    """Crashes now and then, to show restarts with backoff in `mainspring status`."""

    name = "flaky"

    async def run(self) -> None:
        while True:
            await self.sleep(random.uniform(5, 20))
            if random.random() < 0.5:
                raise ConnectionError("upstream closed the connection")


class Weather(Service):
    name = "weather"

    def __init__(self, http: HttpClient, url: str) -> None:
        self.http, self.url = http, url

    @loop(every=60)
    async def fetch(self) -> None:
        (await self.http.client.get(self.url)).raise_for_status()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = load_settings(Settings)
    async with Runtime(app, settings) as rt:
        db = await rt.open(Database(settings.database_url))
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        http = await rt.open(HttpClient(timeout=10))
        rt.supervise(Leader(db), singleton=True)
        rt.supervise(Scoreboard())
        rt.supervise(Flaky, start_delay=2)
        rt.supervise(
            lambda: Weather(http, settings.weather_url or ""),
            name="weather",
            enabled=setting(settings, "weather_url"),
        )
        yield


app = instrument(FastAPI(title="example-pollers", version="0.1.0", lifespan=lifespan))


@app.get("/")
async def index(scoreboard: Annotated[Scoreboard, Depends(use(Scoreboard))]) -> dict[str, object]:
    return {"scoreboard_checks": scoreboard.checks, "live": scoreboard.live}


@app.get("/heartbeats")
async def heartbeats(session: DbSession) -> dict[str, object]:
    count = await session.scalar(select(func.count()).select_from(Heartbeat))
    last = await session.scalar(select(Heartbeat).order_by(Heartbeat.id.desc()).limit(1))
    return {
        "count": count,
        "last": None
        if last is None
        else {"holder": last.holder, "fencing_token": last.fencing_token, "at": last.at},
    }
