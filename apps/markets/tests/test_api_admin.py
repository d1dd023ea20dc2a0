"""Admin imports through the real app against the local fake ESPN: auth, validation, progress,
and idempotency (an overlapping range creates nothing twice)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from markets_support import served
from sqlalchemy import func, select

from mainspring.resources import Database
from markets.db.models import ImportRun, ImportState, Market, SportsImport
from markets.espn.client import EspnClient
from markets.espn.fake import serve_fake
from markets.espn.fixtures import RecordedFeed
from markets.importer import QUEUE_SIZE, Importer, ImportQueueFull

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IMPORT_DEADLINE = 60.0


@pytest.fixture(scope="module")
def feed_url() -> Iterator[str]:
    """Every day has games: the recordings, moved to the requested date with fresh ids."""
    with serve_fake(RecordedFeed(fill=True)) as url:
        yield url


@pytest.fixture
async def client(
    database_url: str, tmp_path: Path, feed_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(
        database_url=database_url,
        espn_base_url=feed_url,
        MAINSPRING_ADMIN_TOKEN=TOKEN,
        MAINSPRING_LEASE_URL=str(tmp_path),
    ) as client:
        yield client


async def finished_import(client: httpx.AsyncClient, body: dict[str, str]) -> dict[str, Any]:
    accepted = await client.post("/admin/imports", json=body, headers=AUTH)
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.json()["status_url"]
    async with asyncio.timeout(IMPORT_DEADLINE):
        while True:
            run: dict[str, Any] = (await client.get(status_url, headers=AUTH)).json()
            if run["state"] in ("done", "failed"):
                return run
            await asyncio.sleep(0.05)


async def count(database: Database, model: type[Market] | type[SportsImport]) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_imports_thirty_days_then_an_overlap_creates_nothing_twice(
    client: httpx.AsyncClient, database: Database
) -> None:
    run = await finished_import(
        client, {"league": "nba", "start": "2024-01-01", "end": "2024-01-30"}
    )
    assert run["state"] == "done"
    assert run["dates_total"] == run["dates_done"] == 30
    assert run["errors"] == {}
    assert run["games_seen"] > 30
    assert run["markets_opened"] == run["games_seen"] == await count(database, Market)
    assert run["requested_by"] == "admin"
    assert run["finished_at"] is not None

    again = await finished_import(
        client, {"league": "nba", "start": "2024-01-21", "end": "2024-02-04"}
    )
    assert again["state"] == "done"
    markets = await count(database, Market)
    assert 0 < again["markets_opened"] < again["games_seen"]
    assert markets == run["markets_opened"] + again["markets_opened"]
    assert await count(database, SportsImport) == markets

    overlap = await finished_import(
        client, {"league": "nba", "start": "2024-01-31", "end": "2024-01-31"}
    )
    assert overlap["games_seen"] > 0
    assert overlap["markets_opened"] == 0
    assert await count(database, Market) == markets


async def test_a_day_espn_cannot_serve_is_recorded_with_its_error(
    client: httpx.AsyncClient, feed_url: str
) -> None:
    faults = {"errors": 4}  # the client's first try and its 3 retries
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{feed_url}/_fake/faults", json=faults)).status_code == 200
    day = {"league": "mlb", "start": "2025-06-01", "end": "2025-06-01"}
    run = await finished_import(client, day)
    assert run["state"] == "failed"
    assert run["dates_done"] == 1
    assert list(run["errors"]) == ["2025-06-01"]
    assert "HTTP 500" in run["errors"]["2025-06-01"]

    retried = await finished_import(client, day)
    assert retried["state"] == "done"
    assert retried["errors"] == {}
    assert retried["markets_opened"] == retried["games_seen"] > 0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"league": "nba", "start": "2024-02-01", "end": "2024-01-01"},
            ["body"],
            "start (2024-02-01) is after end (2024-01-01)",
        ),
        (
            {"league": "nba", "start": "2023-01-01", "end": "2024-01-02"},
            ["body"],
            "the range covers 367 days; at most 366 may be imported at once",
        ),
        (
            {"league": "nfl", "start": "2024-01-01", "end": "2024-01-02"},
            ["body", "league"],
            "unknown league 'nfl'; known leagues: mlb, nba",
        ),
        ({"league": "nba", "start": "2024-01-01"}, ["body", "end"], "Field required"),
        (
            {"league": "nba", "start": "2024-13-01", "end": "2024-01-02"},
            ["body", "start"],
            "month value is outside expected range",
        ),
    ],
)
async def test_invalid_imports_are_422_naming_the_problem(
    client: httpx.AsyncClient, body: dict[str, str], field: list[str], message: str
) -> None:
    response = await client.post("/admin/imports", json=body, headers=AUTH)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == field
    assert message in error["msg"]


async def test_the_full_year_is_accepted(client: httpx.AsyncClient) -> None:
    body = {"league": "mlb", "start": "2024-01-01", "end": "2024-12-31"}  # 366 days: a leap year
    response = await client.post("/admin/imports", json=body, headers=AUTH)
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/admin/imports"), ("GET", "/admin/imports/1")]
)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "send Authorization: Bearer <MAINSPRING_ADMIN_TOKEN>"),
        ({"Authorization": "Bearer wrong"}, "the admin token is not valid"),
    ],
)
async def test_admin_routes_need_the_token(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], message: str
) -> None:
    body = {"league": "nba", "start": "2024-01-01", "end": "2024-01-02"}
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == message


async def test_unknown_import_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/imports/424242", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["detail"] == "import 424242 not found"


async def test_a_full_queue_is_refused(database: Database) -> None:
    async with httpx.AsyncClient() as http:
        importer = Importer(database, EspnClient(http, "http://127.0.0.1:9"))
        for _ in range(QUEUE_SIZE):
            await importer.enqueue("nba", date(2024, 1, 1), date(2024, 1, 1), requested_by="test")
        with pytest.raises(ImportQueueFull, match="try again later"):
            await importer.enqueue("nba", date(2024, 1, 1), date(2024, 1, 1), requested_by="test")
        assert importer.queue.qsize() == QUEUE_SIZE


async def test_a_full_import_queue_is_429_with_retry_after(
    client: httpx.AsyncClient, feed_url: str
) -> None:
    body = {"league": "nba", "start": "2024-01-01", "end": "2024-01-01"}
    async with httpx.AsyncClient() as http:
        await http.post(f"{feed_url}/_fake/faults", json={"latency": 30.0})
        try:
            for _ in range(QUEUE_SIZE + 2):  # one may be taken off the queue and run
                response = await client.post("/admin/imports", json=body, headers=AUTH)
                if response.status_code != 202:
                    break
        finally:
            await http.post(f"{feed_url}/_fake/faults", json={"latency": 0.0})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "10"
    assert response.json()["detail"] == f"{QUEUE_SIZE} imports are already waiting; try again later"


async def test_stopping_the_app_interrupts_a_running_import(
    database_url: str, database: Database, tmp_path: Path, feed_url: str
) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(f"{feed_url}/_fake/faults", json={"latency": 30.0})
        try:
            async with served(
                database_url=database_url,
                espn_base_url=feed_url,
                MAINSPRING_ADMIN_TOKEN=TOKEN,
                MAINSPRING_LEASE_URL=str(tmp_path),
            ) as client:
                body = {"league": "nba", "start": "2024-01-01", "end": "2024-01-31"}
                accepted = await client.post("/admin/imports", json=body, headers=AUTH)
                url = accepted.json()["status_url"]
                async with asyncio.timeout(IMPORT_DEADLINE):
                    while True:
                        if (await client.get(url, headers=AUTH)).json()["state"] == "running":
                            break
                        await asyncio.sleep(0.05)
        finally:
            await http.post(f"{feed_url}/_fake/faults", json={"latency": 0.0})
    async with database.session() as session:
        stored = await session.get(ImportRun, accepted.json()["id"])
    assert stored is not None
    assert stored.state is ImportState.FAILED
    assert stored.errors == {"run": "interrupted: the process stopped"}
    assert stored.finished_at is not None
