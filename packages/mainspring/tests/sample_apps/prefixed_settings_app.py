"""An app whose settings subclass chooses its own prefix and is loaded in the lifespan,
the way examples/pollers.py does it: `SAMPLE_*` for the app, `MAINSPRING_*` for the runtime."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic_settings import SettingsConfigDict

from mainspring import MainspringSettings, Runtime, Service, load_settings, loop, setting
from mainspring.resources import Database
from mainspring.urls import DatabaseUrl, HttpUrl, RedisUrl


class Settings(MainspringSettings):
    model_config = SettingsConfigDict(env_prefix="SAMPLE_", extra="ignore")

    database_url: DatabaseUrl = "sqlite://"
    upstream_url: HttpUrl | None = None
    redis_url: RedisUrl | None = None
    poll_enabled: bool = False


class Poller(Service):
    name = "poller"

    @loop(every=60)
    async def poll(self) -> None:
        return None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = load_settings(Settings)
    async with Runtime(app, settings) as rt:
        await rt.open(Database(settings.database_url))
        rt.supervise(Poller, enabled=setting(settings, "poll_enabled"))
        yield


app = FastAPI(title="prefixed-settings-app", lifespan=lifespan)


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}
