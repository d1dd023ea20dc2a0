"""The Alembic migrations build exactly the models' schema, on both engines, any number of times."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, select, text
from structlog.testing import capture_logs

import markets.db.session as session_module
from mainspring.resources.database import Database
from mainspring.resources.lock import database_lock
from markets.db.models import Base, League
from markets.db.session import MIGRATIONS_LOCK, upgrade_async, upgrade_database

DEADLINE = 30.0


def schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [
        diff
        for diff in compare_metadata(context, Base.metadata)
        if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
    ]


async def test_upgrade_twice_builds_the_models_schema_and_seeds_the_leagues(
    database_url: str,
) -> None:
    await upgrade_async(database_url)
    await upgrade_async(database_url)

    db = Database(database_url)
    await db.open()
    try:
        async with db.engine.connect() as connection:
            assert await connection.run_sync(schema_differences) == []
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            leagues = (await connection.execute(select(League.code, League.sport_path))).all()
        assert version == "0001"
        assert sorted(leagues) == [("mlb", "baseball/mlb"), ("nba", "basketball/nba")]
    finally:
        await db.close()


async def test_an_in_memory_database_is_upgraded_through_its_own_engine() -> None:
    db = Database()
    await db.open()
    try:
        await upgrade_database(db)
        await upgrade_database(db)
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(League)) == 2
    finally:
        await db.close()


async def test_the_sqlite_folder_is_created(tmp_path: Any) -> None:
    path = tmp_path / "var" / "nested" / "markets.db"
    await upgrade_async(f"sqlite:///{path}")
    assert path.is_file()


async def test_a_cancelled_upgrade_keeps_the_lock_until_its_migration_thread_is_done(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alembic runs on in its thread when start-up is cancelled: the lock must stay held
    until it ends, or another worker could migrate at the same time."""
    url = f"sqlite:///{tmp_path / 'markets.db'}"
    migrating, finish = threading.Event(), threading.Event()

    def slow_upgrade(database_url: str) -> None:
        migrating.set()
        finish.wait(DEADLINE)

    monkeypatch.setattr(session_module, "_upgrade_at", slow_upgrade)
    upgrading = asyncio.ensure_future(upgrade_async(url))
    second: asyncio.Future[None] | None = None
    try:
        await asyncio.to_thread(migrating.wait, DEADLINE)
        upgrading.cancel()
        with capture_logs() as logs:
            second = asyncio.ensure_future(_take_the_lock(url))
            while not any(e["event"] == "waiting for the database lock" for e in logs):
                assert not second.done(), "the lock was free while the migration still ran"
                await asyncio.sleep(0.01)
        assert not upgrading.done()
    finally:
        finish.set()
    with pytest.raises(asyncio.CancelledError):
        await upgrading
    assert second is not None
    async with asyncio.timeout(DEADLINE):
        await second


async def _take_the_lock(url: str) -> None:
    async with database_lock(url, MIGRATIONS_LOCK, poll_interval=0.01):
        pass
