"""`Database`: one SQLAlchemy async engine per process, and sessions that commit as a unit.

The same code runs on SQLite (embedded, the default) and PostgreSQL (set a URL):
plain ``sqlite://`` and ``postgresql://`` URLs are given their async drivers here,
so a ``DATABASE_URL`` copied from anywhere just works.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import Depends
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState

from mainspring.dependencies import use
from mainspring.observability.errors import Overloaded
from mainspring.observability.openapi import declares_errors
from mainspring.resources.base import Resource

log = structlog.get_logger("mainspring.resources")

MEMORY_URL = "sqlite+aiosqlite:///:memory:"
"""Used when no URL is given: nothing is written to disk and nothing outlives the process,
which suits tests and demos; give a URL (a file or a server) to keep data."""

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def async_url(url: str | URL) -> URL:
    """`url` with an async driver when it names none (``sqlite://`` -> ``sqlite+aiosqlite://``)."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


DEFAULT_POOL_TIMEOUT = 2.0
"""Seconds a session waits for a free connection before its request gets a 503: long
enough for a burst to drain, short enough that a client is told to retry instead of
waiting for a 500 (SQLAlchemy's own default is 30 s)."""


class DatabaseBusy(Overloaded, PoolTimeout):
    """Every pooled connection stayed busy for the pool timeout: answered 503 with
    ``Retry-After``, and still a SQLAlchemy ``TimeoutError`` for code that catches one."""


def is_memory(url: URL) -> bool:
    """An in-memory SQLite URL: a database that lives in one connection of one process."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


class Database(Resource):
    """A pooled async engine and its session factory.

    Request handlers take a session with :data:`DbSession`; background code uses
    ``async with db.session() as session:``. Both commit when the block succeeds
    and roll back when it raises.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        echo: bool = False,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        connect_timeout: float = 5,
        sqlite_busy_timeout_ms: int = 5000,
        name: str = "database",
    ) -> None:
        self.url = async_url(url if url is not None else MEMORY_URL)
        self.name = name
        self.echo = echo
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.pool_timeout = pool_timeout
        self.connect_timeout = connect_timeout
        """Bounds connecting, and the whole of `check()`."""
        self.sqlite_busy_timeout_ms = sqlite_busy_timeout_ms
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r}, name={self.name!r})"

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``: known before `open()`, for choosing SQL."""
        return self.url.get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"{self!r} is not open; open it with `await runtime.open(db)`")
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The session factory, for code that manages its own transactions."""
        if self._sessions is None:
            raise RuntimeError(f"{self!r} is not open; open it with `await runtime.open(db)`")
        return self._sessions

    async def open(self) -> None:
        """Create the engine and connect once, so a wrong URL fails startup, not a request."""
        if self._engine is not None:
            raise RuntimeError(f"{self!r} is already open")
        # Bound values stay out of error messages, logs and /debug/status.
        engine = create_async_engine(
            self.url, echo=self.echo, hide_parameters=True, **self._engine_options()
        )
        if self.dialect == "sqlite":
            self._configure_sqlite(engine)
        try:
            await self._select_one(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        log.info("database opened", name=self.name, dialect=self.dialect)

    async def close(self) -> None:
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def check(self) -> None:
        await self._select_one(self.engine)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed when the block succeeds, rolled back when it raises.

        Commits made inside the block are kept; whatever follows them is committed at the end.
        When no connection comes free within `pool_timeout`, it raises `DatabaseBusy`.
        """
        try:
            async with self.sessions() as session:
                try:
                    yield session
                except BaseException:
                    await session.rollback()
                    raise
                await session.commit()
        except PoolTimeout as exc:
            if isinstance(exc, DatabaseBusy):
                raise
            raise DatabaseBusy(
                f"no database connection came free within {self.pool_timeout:g} s; retry shortly"
            ) from exc

    async def _select_one(self, engine: AsyncEngine) -> None:
        async with asyncio.timeout(self.connect_timeout), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def _engine_options(self) -> dict[str, Any]:
        if self.dialect == "postgresql":
            return {
                "pool_size": self.pool_size,
                "max_overflow": self.max_overflow,
                "pool_timeout": self.pool_timeout,
                "pool_pre_ping": True,
                "connect_args": {"timeout": self.connect_timeout},
            }
        if self.dialect == "sqlite" and is_memory(self.url):
            # One connection holds the whole database; the pool lends it to one
            # session at a time, so concurrent sessions never share a transaction.
            return {
                "poolclass": AsyncAdaptedQueuePool,
                "pool_size": 1,
                "max_overflow": 0,
                "pool_timeout": self.pool_timeout,
            }
        return {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_timeout": self.pool_timeout,
        }

    def _configure_sqlite(self, engine: AsyncEngine) -> None:
        """Set on every new connection: WAL lets readers run beside the one writer, the busy
        timeout makes a second writer wait instead of failing, and foreign keys are enforced."""
        pragmas = [
            f"PRAGMA busy_timeout = {int(self.sqlite_busy_timeout_ms)}",
            "PRAGMA foreign_keys = ON",
        ]
        if not is_memory(self.url):
            pragmas.insert(0, "PRAGMA journal_mode = WAL")

        @event.listens_for(engine.sync_engine, "connect")
        def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                for pragma in pragmas:
                    cursor.execute(pragma)
            finally:
                cursor.close()

        event.listen(engine.sync_engine, "reset", _end_transaction_left_by_failed_commit)


def _end_transaction_left_by_failed_commit(
    dbapi_connection: Any, _record: Any, state: PoolResetState
) -> None:
    """A COMMIT that fails (a deferred foreign key, say) leaves SQLite's transaction open,
    while SQLAlchemy counts it as ended and skips its rollback on return to the pool; the
    next session on that connection would then commit the failed work along with its own."""
    if (
        state.transaction_was_reset
        and state.asyncio_safe
        and dbapi_connection.driver_connection.in_transaction
    ):
        dbapi_connection.rollback()


async def db_session(
    db: Annotated[Database, Depends(use(Database))],
) -> AsyncIterator[AsyncSession]:
    """The request's session: committed when the handler returns, rolled back when it raises."""
    async with db.session() as session:
        yield session


declares_errors(db_session, {503: "Every database connection stayed busy; retry shortly."})

DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]
"""A handler parameter type. ``scope="function"`` commits before the response is sent,
so a failed commit is an error response, never a 200 for work that was lost."""
