"""`database_lock`: one holder at a time across processes, on a SQLite file (flock) and on
PostgreSQL (advisory lock); a waiter that is cancelled leaves nothing behind."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from process_support import EXIT_DEADLINE, wait_for
from server_support import POSTGRES_URL, require_server
from sse_support import eventually
from structlog.testing import capture_logs

from mainspring.resources import database_lock
from mainspring.resources.database import async_url
from mainspring.resources.lock import advisory_key, sqlite_lock_path

DEADLINE = 30.0

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from mainspring.resources import database_lock

    async def main() -> None:
        async with database_lock(sys.argv[1], sys.argv[2], poll_interval=0.02):
            print("held", flush=True)
            await asyncio.to_thread(sys.stdin.readline)  # until the test lets go
        print("released", flush=True)

    asyncio.run(main())
    """
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'app.db'}"
    return require_server(POSTGRES_URL, "PostgreSQL")


@pytest.fixture
def lock_name() -> str:
    """Unique per test: other test runs may share the PostgreSQL database."""
    return f"test-{uuid.uuid4().hex[:12]}"


class Holders:
    """Processes that each take the lock, say "held", and let go when told."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, url: str, name: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"holder-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", HOLDER, url, name],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        return next(log for started, log in self.started if started is process).read_text()

    def let_go(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        process.stdin.write(b"\n")
        process.stdin.flush()

    def stop_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=EXIT_DEADLINE)


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[Holders]:
    holders = Holders(tmp_path)
    try:
        yield holders
    finally:
        holders.stop_all()


def test_a_second_process_waits_until_the_first_lets_go(
    holders: Holders, database_url: str, lock_name: str
) -> None:
    both = [holders.start(database_url, lock_name) for _ in range(2)]

    def holding() -> list[subprocess.Popen[bytes]]:
        return [p for p in both if "held" in holders.output(p)]

    wait_for(lambda: bool(holding()), DEADLINE, "one of them to take the lock")
    (first,) = holding()
    (second,) = [p for p in both if p is not first]
    wait_for(
        lambda: "waiting for the database lock" in holders.output(second),
        DEADLINE,
        "the other to wait",
    )
    assert holding() == [first]

    holders.let_go(first)

    wait_for(lambda: "held" in holders.output(second), DEADLINE, "the second to take the lock")
    assert first.wait(timeout=EXIT_DEADLINE) == 0
    holders.let_go(second)
    assert second.wait(timeout=EXIT_DEADLINE) == 0


async def test_a_cancelled_waiter_leaves_the_lock_free(database_url: str, lock_name: str) -> None:
    with capture_logs() as logs:

        async def waiting() -> bool:
            return any(entry["event"] == "waiting for the database lock" for entry in logs)

        async with database_lock(database_url, lock_name, poll_interval=0.01):
            waiter = asyncio.create_task(_hold(database_url, lock_name))
            await eventually(waiting, True, "the second holder to wait")
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
    if database_url.startswith("postgresql"):
        # Nothing left in the server's queue for the lock, granted or waiting.
        await eventually(lambda: _advisory_locks(lock_name), 0, "the waiter's session to end")
    async with asyncio.timeout(DEADLINE), database_lock(database_url, lock_name):
        pass


async def _hold(url: str, name: str) -> None:
    async with database_lock(url, name, poll_interval=0.01):
        raise AssertionError("the lock was taken while another held it")


async def _advisory_locks(name: str) -> int:
    key = advisory_key(name) & 0xFFFF_FFFF_FFFF_FFFF
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = $1 AND objid = $2 AND objsubid = 1",
                key >> 32,
                key & 0xFFFF_FFFF,
            )
        )
    finally:
        await conn.close()


def test_the_sqlite_lock_file_sits_beside_the_database(tmp_path: Path) -> None:
    url = async_url(f"sqlite:///{tmp_path / 'var' / 'app.db'}")
    assert sqlite_lock_path(url, "migrations") == tmp_path / "var" / "app.db-migrations.lock"


async def test_an_in_memory_database_needs_no_lock() -> None:
    async with asyncio.timeout(DEADLINE):
        async with database_lock("sqlite://", "x"), database_lock("sqlite:///:memory:", "x"):
            pass


@pytest.mark.parametrize(
    ("url", "name", "message"),
    [
        ("sqlite:///app.db", "../escape", "lock name"),
        ("sqlite:///app.db", "", "lock name"),
        ("mysql://db/app", "migrations", "no database lock for 'mysql'"),
    ],
)
async def test_a_bad_name_or_engine_is_refused(url: str, name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with database_lock(url, name):
            pass
