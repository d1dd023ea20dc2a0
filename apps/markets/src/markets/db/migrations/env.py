"""Alembic's entry point: migrate on a connection we are handed, or open one from the URL.

Only the async drivers are installed (aiosqlite, asyncpg), so a URL is migrated through an
async engine with `run_sync`, the recipe from Alembic's cookbook. `markets.db.session` sets
``config.attributes``: ``connection`` (a sync connection inside `run_sync`) or ``database_url``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from markets.db.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters tables by copying them; batch mode does that for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_at(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported")
    shared = context.config.attributes.get("connection")
    if shared is not None:
        run_migrations(shared)
    else:
        asyncio.run(run_migrations_at(context.config.attributes["database_url"]))


main()
