"""Applying the Alembic migrations from code: `markets db upgrade`, and the app at start.

The schema comes only from the migrations in ``markets/db/migrations`` (never from
``create_all``), so a database created by the app and one upgraded by hand are the same.
Upgrading is idempotent: what is already applied is skipped. It runs under the database's
lock, so the workers of a deployment starting together never migrate at the same time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Connection

from mainspring.resources.database import Database, async_url
from mainspring.resources.lock import database_lock, finish_in_thread

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATIONS_LOCK = "migrations"
"""The database lock held while migrating: the workers of one deployment start together."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database_url: str) -> None:
    """`upgrade_async` for synchronous code (the CLI): blocks until the database is at head."""
    asyncio.run(upgrade_async(database_url))


async def upgrade_async(database_url: str) -> None:
    """Bring the database at `database_url` to the latest revision, once across processes.

    Every worker of a deployment calls this at start. Under the database's own lock the
    first applies the migrations; the others wait, then find the schema at head and apply
    nothing. Alembic is synchronous, so it runs in a thread, which keeps the lock until it
    is done even when start-up is cancelled. An in-memory SQLite database
    lives in one connection: use `upgrade_database` with the app's `Database` for that.
    """
    async with database_lock(database_url, MIGRATIONS_LOCK):
        await finish_in_thread(_upgrade_at, database_url)  # never migrating unlocked


def _upgrade_at(database_url: str) -> None:
    url = async_url(database_url)
    _create_sqlite_directory(url)
    config = _config()
    config.attributes["database_url"] = url.render_as_string(hide_password=False)
    command.upgrade(config, "head")


async def upgrade_database(db: Database) -> None:
    """Upgrade through an open `Database`'s own engine (the only way for ``:memory:``)."""
    async with db.engine.begin() as connection:
        await connection.run_sync(_upgrade_on)


def _upgrade_on(connection: Connection) -> None:
    config = _config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _create_sqlite_directory(url: URL) -> None:
    """SQLite creates the file but not its folder (``./var`` in the default URL)."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
