"""`database_lock`: one holder at a time among all the processes that use one database.

It is for start-up work that every worker would otherwise race to do, such as schema
migrations: make the work idempotent and do it under the lock. The first process to start
does it; the others wait their turn, then find it done. The lock is the database's own:

* a SQLite file: an ``flock`` on ``<database file>-<name>.lock`` beside the database (one
  host, like SQLite itself); the file is kept, only the lock comes and goes;
* PostgreSQL: a session advisory lock (``pg_advisory_lock``) on a connection of its own, so
  the server frees it when that connection ends, however its holder dies;
* in-memory SQLite: no other process can see the database, so there is nothing to lock.

Waiting never blocks the event loop and can be cancelled: the file lock is tried without
blocking (``LOCK_NB``) and tried again after a short sleep; the advisory lock is awaited on its
connection. Synchronous work under the lock runs in `finish_in_thread`, which keeps the
block (and so the lock) until the thread is done, even when the waiter is cancelled.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import ParamSpec, TypeVar

import asyncpg  # type: ignore[import-untyped]
import structlog
from sqlalchemy.engine import URL

from mainspring.resources.database import async_url, is_memory

log = structlog.get_logger("mainspring.resources")

_LOCK_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
P = ParamSpec("P")
T = TypeVar("T")


@asynccontextmanager
async def database_lock(
    url: str | URL,
    name: str,
    *,
    poll_interval: float = 0.1,
    connect_timeout: float = 5.0,
) -> AsyncIterator[None]:
    """Hold the lock `name` of the database at `url` for the length of the block.

    `poll_interval` is how often a SQLite waiter tries again; `connect_timeout` bounds
    connecting to PostgreSQL (not the wait for the lock, which lasts as long as its holder).
    """
    if not _LOCK_NAME.fullmatch(name):
        raise ValueError(f"lock name {name!r}: use 1-64 letters, digits, '_' or '-'")
    database = async_url(url)
    dialect = database.get_backend_name()
    if dialect == "sqlite":
        if is_memory(database):
            yield
            return
        async with _file_lock(sqlite_lock_path(database, name), name, poll_interval):
            yield
    elif dialect == "postgresql":
        async with _advisory_lock(database, name, connect_timeout):
            yield
    else:
        raise ValueError(f"no database lock for {dialect!r}: use SQLite or PostgreSQL")


async def finish_in_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``asyncio.to_thread`` for work under a lock: a thread cannot be stopped, so when the
    caller is cancelled this still waits for the thread to end before re-raising, and the
    lock is let go only once nobody is working under it."""
    work = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the cancellation is what the caller gets
        raise


def sqlite_lock_path(database: URL, name: str) -> Path:
    """The lock file beside a SQLite database file: ``var/app.db`` -> ``var/app.db-NAME.lock``."""
    path = Path(str(database.database))
    return path.with_name(f"{path.name}-{name}.lock")


def advisory_key(name: str) -> int:
    """The signed 64-bit advisory lock key of `name` (stable across processes and hosts)."""
    digest = hashlib.blake2b(f"mainspring.database_lock\0{name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@asynccontextmanager
async def _file_lock(path: Path, name: str, poll_interval: float) -> AsyncIterator[None]:
    fd = _try_file_lock(path)
    if fd is None:
        log.info("waiting for the database lock", lock=name, path=str(path))
    while fd is None:
        await asyncio.sleep(poll_interval)
        fd = _try_file_lock(path)
    try:
        yield
    finally:
        _unlock(fd)


def _try_file_lock(path: Path) -> int | None:
    """An open, ``flock``-ed descriptor of `path`, or None while another holds it. Never
    waits (``LOCK_NB``), so it runs on the event loop, and no attempt is ever in flight
    when the waiter is cancelled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@asynccontextmanager
async def _advisory_lock(database: URL, name: str, connect_timeout: float) -> AsyncIterator[None]:
    dsn = database.set(drivername="postgresql").render_as_string(hide_password=False)
    key = advisory_key(name)
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
            log.info(
                "waiting for the database lock",
                lock=name,
                database=database.render_as_string(hide_password=True),
            )
            await conn.execute("SELECT pg_advisory_lock($1)", key)
        yield
    except BaseException:
        conn.terminate()  # The session ends, and the server frees its locks with it.
        raise
    await conn.close(timeout=connect_timeout)
