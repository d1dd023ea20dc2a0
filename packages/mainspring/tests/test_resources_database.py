"""Database: URL handling, SQLite pragmas, sessions, the request-scoped session, PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mainspring import Runtime, use
from mainspring.resources import Database, DbSession
from mainspring.resources.database import async_url

UNREACHABLE_POSTGRES_URL = "postgresql://postgres@127.0.0.1:1/test"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgres://u:p@db/app", "postgresql+asyncpg://u:p@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
    ],
)
def test_urls_get_an_async_driver(given: str, expected: str) -> None:
    assert async_url(given).render_as_string(hide_password=False) == expected


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'app.db'}", sqlite_busy_timeout_ms=1234)
    await db.open()
    yield db
    await db.close()


async def _pragma(db: Database, name: str) -> object:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(f"PRAGMA {name}"))).scalar()


async def test_sqlite_file_connections_use_wal_busy_timeout_and_foreign_keys(
    sqlite_db: Database,
) -> None:
    # Two connections at once: the pragmas are set on each new connection, not just the first.
    async with sqlite_db.engine.connect() as first, sqlite_db.engine.connect() as second:
        for conn in (first, second):
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 1234
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    assert sqlite_db.dialect == "sqlite"


async def test_foreign_keys_are_enforced(sqlite_db: Database) -> None:
    async with sqlite_db.session() as session:
        await session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await session.execute(
            text("CREATE TABLE child (parent_id INTEGER NOT NULL REFERENCES parent (id))")
        )
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        async with sqlite_db.session() as session:
            await session.execute(text("INSERT INTO child VALUES (42)"))


async def _create_orphans(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await session.execute(
            text(
                "CREATE TABLE orphans (parent_id INTEGER NOT NULL"
                " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )


async def _count_orphans(db: Database) -> object:
    async with db.session() as session:
        return (await session.execute(text("SELECT count(*) FROM orphans"))).scalar()


async def test_a_failed_commit_leaves_nothing_for_the_next_session(sqlite_db: Database) -> None:
    # SQLite keeps the transaction open when COMMIT fails; the pooled connection must not
    # carry it into the next session, whose COMMIT would save the orphan after all.
    await _create_orphans(sqlite_db)
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        async with sqlite_db.session() as session:
            await session.execute(text("INSERT INTO orphans VALUES (7)"))
    assert await _count_orphans(sqlite_db) == 0


async def _create_items(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("CREATE TABLE items (name TEXT PRIMARY KEY)"))


async def _names(db: Database) -> list[str]:
    async with db.session() as session:
        rows = await session.execute(text("SELECT name FROM items ORDER BY name"))
        return list(rows.scalars())


async def test_session_commits_on_success_and_rolls_back_on_error(sqlite_db: Database) -> None:
    await _create_items(sqlite_db)
    async with sqlite_db.session() as session:
        await session.execute(text("INSERT INTO items VALUES ('kept')"))

    async def insert_then_fail() -> None:
        async with sqlite_db.session() as session:
            await session.execute(text("INSERT INTO items VALUES ('lost')"))
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await insert_then_fail()
    assert await _names(sqlite_db) == ["kept"]


async def test_session_keeps_explicit_commits_and_commits_what_follows(
    sqlite_db: Database,
) -> None:
    await _create_items(sqlite_db)
    async with sqlite_db.session() as session:
        await session.execute(text("INSERT INTO items VALUES ('a')"))
        await session.commit()
        await session.execute(text("INSERT INTO items VALUES ('b')"))

    async def commit_then_fail() -> None:
        async with sqlite_db.session() as session:
            await session.execute(text("INSERT INTO items VALUES ('c')"))
            await session.commit()
            await session.execute(text("INSERT INTO items VALUES ('d')"))
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await commit_then_fail()
    assert await _names(sqlite_db) == ["a", "b", "c"]


async def test_default_is_one_in_memory_database_shared_by_every_session() -> None:
    db = Database()
    await db.open()
    try:
        await _create_items(db)
        async with db.session() as session:
            await session.execute(text("INSERT INTO items VALUES ('x')"))
        assert await _names(db) == ["x"]
        assert await _pragma(db, "foreign_keys") == 1
        assert await _pragma(db, "journal_mode") == "memory"
    finally:
        await db.close()


async def test_use_before_open_and_after_close_is_a_clear_error(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'app.db'}")
    with pytest.raises(RuntimeError, match="not open"):
        _ = db.engine
    with pytest.raises(RuntimeError, match="not open"):
        _ = db.sessions
    with pytest.raises(RuntimeError, match="not open"):
        await db.check()

    await db.open()
    await db.check()
    await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.check()
    with pytest.raises(RuntimeError, match="not open"):
        async with db.session():
            pass


async def test_unreachable_postgres_fails_open_and_check() -> None:
    db = Database(UNREACHABLE_POSTGRES_URL, connect_timeout=2)
    assert db.dialect == "postgresql"
    with pytest.raises((OSError, TimeoutError)):
        await db.open()
    with pytest.raises(RuntimeError, match="not open"):
        await db.check()


# The request-scoped session, through a real FastAPI app.


def _app(db: Database | None = None) -> FastAPI:
    """Routes on `db`; without one, on the Database that the app's Runtime opened."""
    if db is None:

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            async with Runtime(app) as runtime:
                await _create_items(await runtime.open(Database(app.state.db_url)))
                yield

        app = FastAPI(lifespan=lifespan)
    else:
        app = FastAPI()
        app.dependency_overrides[use(Database)] = lambda: db

    @app.get("/items")
    async def names(session: DbSession) -> list[str]:
        return list((await session.execute(text("SELECT name FROM items ORDER BY name"))).scalars())

    @app.post("/items/{name}")
    async def add(name: str, session: DbSession) -> dict[str, str]:
        await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": name})
        return {"added": name}

    @app.post("/items/{name}/then-fail")
    async def add_then_fail(name: str, session: DbSession) -> None:
        await session.execute(text("INSERT INTO items VALUES (:name)"), {"name": name})
        raise HTTPException(status_code=409, detail="changed my mind")

    @app.post("/orphans/{parent_id}")
    async def add_orphan(parent_id: int, session: DbSession) -> dict[str, int]:
        # The foreign key is checked at COMMIT, which runs after this handler returns.
        await session.execute(text("INSERT INTO orphans VALUES (:p)"), {"p": parent_id})
        return {"added": parent_id}

    return app


@pytest.fixture
async def client(sqlite_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    await _create_items(sqlite_db)
    transport = httpx.ASGITransport(app=_app(sqlite_db), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


async def test_request_session_commits_when_the_handler_succeeds(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    response = await client.post("/items/apple")
    assert response.status_code == 200
    assert await _names(sqlite_db) == ["apple"]


async def test_request_session_rolls_back_when_the_handler_raises(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    response = await client.post("/items/pear/then-fail")
    assert response.status_code == 409
    assert await _names(sqlite_db) == []


async def test_a_failed_commit_is_an_error_response_not_a_200(
    client: httpx.AsyncClient, sqlite_db: Database
) -> None:
    await _create_orphans(sqlite_db)
    response = await client.post("/orphans/7")
    assert response.status_code == 500
    assert await _count_orphans(sqlite_db) == 0


async def test_db_session_uses_the_database_the_runtime_opened(tmp_path: Path) -> None:
    app = _app()
    app.state.db_url = f"sqlite:///{tmp_path / 'app.db'}"
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        assert (await client.post("/items/fig")).status_code == 200
        assert (await client.post("/items/kiwi/then-fail")).status_code == 409
        assert (await client.get("/items")).json() == ["fig"]


# PostgreSQL: a real server (`postgres_url` comes from conftest.py).


@pytest.mark.postgres
async def test_postgres_open_check_and_session_round_trip(postgres_url: str) -> None:
    db = Database(postgres_url)
    assert db.url.drivername == "postgresql+asyncpg"
    await db.open()
    try:
        await db.check()
        table = f"mainspring_test_{uuid.uuid4().hex[:12]}"
        async with db.session() as session:
            await session.execute(text(f"CREATE TEMP TABLE {table} (name TEXT PRIMARY KEY)"))
            await session.execute(text(f"INSERT INTO {table} VALUES ('a'), ('b')"))
            await session.commit()
            rows = await session.execute(text(f"SELECT name FROM {table} ORDER BY name"))
            assert list(rows.scalars()) == ["a", "b"]

        async def violate_a_unique_key() -> None:
            async with db.session() as session:
                await session.execute(text("CREATE TEMP TABLE once (id INT PRIMARY KEY)"))
                await session.execute(text("INSERT INTO once VALUES (1), (1)"))

        with pytest.raises(IntegrityError):
            await violate_a_unique_key()
    finally:
        await db.close()
    with pytest.raises(RuntimeError, match="not open"):
        await db.check()
