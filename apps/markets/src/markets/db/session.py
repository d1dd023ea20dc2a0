"""Applying the Alembic migrations from code: `markets db upgrade`, and the app at start.

The schema comes only from the migrations in ``markets/db/migrations`` (never from
``create_all``), so a database created by the app and one upgraded by hand are the same.
Upgrading is idempotent: what is already applied is skipped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Connection

from mainspring.resources.database import Database, async_url

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database_url: str) -> None:
    """Bring the database at `database_url` to the latest revision (blocking).

    It runs its own event loop, so call it from synchronous code (the CLI) or through
    `upgrade_async`. An in-memory SQLite database lives in one connection: use
    `upgrade_database` with the app's `Database` for that.
    """
    url = async_url(database_url)
    _create_sqlite_directory(url)
    config = _config()
    config.attributes["database_url"] = url.render_as_string(hide_password=False)
    command.upgrade(config, "head")


async def upgrade_async(database_url: str) -> None:
    """`upgrade` off the event loop, for an app applying migrations at start."""
    await asyncio.to_thread(upgrade, database_url)


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
