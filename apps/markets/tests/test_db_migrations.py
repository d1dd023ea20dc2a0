"""The Alembic migrations build exactly the models' schema, on both engines, any number of times."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, select, text

from mainspring.resources.database import Database
from markets.db.models import Base, League
from markets.db.session import upgrade_async, upgrade_database


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
