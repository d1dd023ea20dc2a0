"""A pool with no free connection: the requests that wait past the pool timeout get a 503
with Retry-After, on SQLite and PostgreSQL, and the ones holding connections finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from server_support import POSTGRES_URL, require_server
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from mainspring import Runtime
from mainspring.observability import instrument
from mainspring.resources import Database, DbSession
from mainspring.resources.database import DatabaseBusy

POOL_SIZE = 2
CLIENTS = 200
DEADLINE = 60.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return require_server(POSTGRES_URL, "PostgreSQL")


def holding_app(db: Database, release: asyncio.Event) -> FastAPI:
    """GET /hold takes a connection and keeps it until `release` is set."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(app) as rt:
            await rt.open(db)
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/hold")
    async def hold(session: DbSession) -> str:
        await session.execute(text("SELECT 1"))
        await release.wait()
        return "done"

    return instrument(app)


async def test_clients_beyond_the_pool_get_503_with_retry_after(database_url: str) -> None:
    release = asyncio.Event()
    db = Database(database_url, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=0.2)
    app = holding_app(db, release)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app", timeout=DEADLINE) as http,
        asyncio.timeout(DEADLINE),
    ):
        requests = [asyncio.ensure_future(http.get("/hold")) for _ in range(CLIENTS)]
        try:
            pending: set[asyncio.Future[httpx.Response]] = set(requests)
            while len(pending) > POOL_SIZE:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            release.set()
            responses = await asyncio.gather(*requests)
        finally:
            release.set()
            for request in requests:
                request.cancel()
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 503]
    assert len(served) == POOL_SIZE
    assert len(refused) == CLIENTS - POOL_SIZE
    for response in refused:
        assert response.headers["retry-after"] == "1"
        assert response.json()["detail"] == (
            "no database connection came free within 0.2 s; retry shortly"
        )


async def test_the_default_pool_timeout_is_two_seconds(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'app.db'}")
    await db.open()
    try:
        assert db.engine.pool.timeout() == 2.0
    finally:
        await db.close()


async def test_busy_is_still_a_sqlalchemy_timeout_for_code_that_catches_one(
    tmp_path: Path,
) -> None:
    db = Database(
        f"sqlite:///{tmp_path / 'app.db'}", pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    await db.open()
    try:
        async with db.session() as holder:
            await holder.execute(text("SELECT 1"))
            with pytest.raises(DatabaseBusy) as caught:
                async with db.session() as waiter:
                    await waiter.execute(text("SELECT 1"))
        assert isinstance(caught.value, PoolTimeout)
    finally:
        await db.close()
