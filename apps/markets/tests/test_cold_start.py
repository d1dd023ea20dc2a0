"""`mainspring run markets.main:app --workers 4` on a fresh database, the README's command:
every start reaches ready with all four workers booted, the migrations applied once and
the schema at head, and stops with exit 0 on SIGTERM. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest
from alembic.script import ScriptDirectory
from faults import fault_count
from process_support import STARTUP_DEADLINE, Runner, free_port, wait_for
from sqlalchemy import text

from mainspring.resources import Database
from mainspring.server.exitcodes import EXIT_OK
from markets.db.session import MIGRATIONS

WORKERS = 4
STARTS = fault_count(ci=2, full=20)


@pytest.mark.faults
@pytest.mark.parametrize("start", range(STARTS))
def test_four_workers_start_on_a_fresh_database(
    runner: Runner, database_url: str, start: int
) -> None:
    port = free_port()
    master = runner.start(
        "markets.main:app",
        *("--port", str(port), "--workers", str(WORKERS)),
        env={"DATABASE_URL": database_url},
    )

    def all_booted_and_ready() -> bool:
        if master.poll() is not None:
            raise AssertionError(f"exited {master.returncode}:\n{runner.output(master)}")
        if _events(runner.output(master)).count("Application startup complete.") < WORKERS:
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(all_booted_and_ready, STARTUP_DEADLINE, f"{WORKERS} workers to boot and be ready")
    master.send_signal(signal.SIGTERM)
    assert runner.wait_exit(master) == EXIT_OK, runner.output(master)

    events = _events(runner.output(master))
    assert sum(e.startswith("Booting worker") for e in events) == WORKERS, "a worker was replaced"
    scripts = ScriptDirectory(str(MIGRATIONS))
    applied = [e for e in events if e.startswith("Running upgrade")]
    assert len(applied) == len(list(scripts.walk_revisions())), applied
    assert asyncio.run(_revision(database_url)) == scripts.get_current_head()


def _events(output: str) -> list[str]:
    return [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]


async def _revision(url: str) -> str:
    db = Database(url)
    await db.open()
    try:
        async with db.session() as session:
            return str(
                (
                    await session.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar_one()
            )
    finally:
        await db.close()
