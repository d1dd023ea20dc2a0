"""Bad input through the real app on SQLite and PostgreSQL: a clear 4xx naming the problem,
never a 500 from the driver, the encoder or the parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from markets_support import served

from markets.api.cursor import encode_cursor

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_ID = 2**31 - 1
IMPORT = {"league": "nba", "start": "2024-01-01", "end": "2024-01-02"}


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on each database, for input that reaches the database."""
    async with served(
        database_url=database_url,
        MAINSPRING_ADMIN_TOKEN=TOKEN,
        MAINSPRING_LEASE_URL=str(tmp_path),
    ) as client:
        yield client


@pytest.fixture
async def sqlite_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on SQLite, for input refused before any query."""
    async with served(
        database_url=f"sqlite:///{tmp_path / 'markets.db'}",
        MAINSPRING_ADMIN_TOKEN=TOKEN,
        MAINSPRING_LEASE_URL=str(tmp_path),
    ) as client:
        yield client


ROW_PATHS = ["/markets/{}", "/games/{}", "/admin/imports/{}"]
EXTREME_TIMES = [
    ("0001-01-01T00:00:00", 200),
    ("0001-01-01T00:00:00Z", 200),
    ("9999-12-31T23:59:59.999999Z", 200),
    ("0001-01-01T00:00:00+05:00", 422),  # year 0 in UTC
    ("9999-12-31T23:59:59-23:59", 422),  # year 10000 in UTC
    ("0.5", 422),  # a Unix time: not the documented ISO 8601
]


async def test_an_id_no_row_can_have_is_422(client: httpx.AsyncClient) -> None:
    for path in ROW_PATHS:
        for row_id in [MAX_ID + 1, 2**63, 2**64, 10**30, 0, -1]:
            response = await client.get(path.format(row_id), headers=AUTH)
            assert response.status_code == 422, (path, row_id, response.text)
            [error] = response.json()["detail"]
            assert error["loc"][0] == "path"


async def test_the_largest_id_is_a_plain_404(client: httpx.AsyncClient) -> None:
    for path in ROW_PATHS:
        response = await client.get(path.format(MAX_ID), headers=AUTH)
        assert response.status_code == 404, path
        assert str(MAX_ID) in response.json()["detail"]


async def test_a_cursor_past_the_id_range_is_422(client: httpx.AsyncClient) -> None:
    for after in [MAX_ID + 1, 2**63, 10**30]:
        response = await client.get("/markets", params={"cursor": encode_cursor(after)})
        assert response.status_code == 422, after
        assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_extreme_times_are_answered_on_every_database(client: httpx.AsyncClient) -> None:
    for name in ["starts_after", "starts_before"]:
        for moment, status in EXTREME_TIMES:
            response = await client.get("/markets", params={name: moment})
            assert response.status_code == status, (name, moment, response.text)
            if status == 422:
                assert response.json()["detail"][0]["loc"] == ["query", name]


async def test_a_lone_surrogate_in_a_body_is_an_encodable_422(
    sqlite_client: httpx.AsyncClient,
) -> None:
    body = b'{"league": "\\ud800", "start": "2024-01-01", "end": "2024-01-02"}'
    response = await sqlite_client.post(
        "/admin/imports", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "league"]
    assert error["input"] == "\ufffd"
    assert error["msg"] == "unknown league '\\ud800'; known leagues: mlb, nba"


async def test_invalid_utf8_in_the_query_and_headers_is_answered(
    sqlite_client: httpx.AsyncClient,
) -> None:
    response = await sqlite_client.get(
        "/markets?league=%ED%A0%80", headers={"X-Request-ID": b"\xed\xa0\x80"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "league"]
    assert response.headers["x-request-id"] != "\xed\xa0\x80"


async def test_a_422_echoes_a_capped_part_of_a_long_field(sqlite_client: httpx.AsyncClient) -> None:
    league = "x" * 500_000
    response = await sqlite_client.post(
        "/admin/imports", json={**IMPORT, "league": league}, headers=AUTH
    )
    assert response.status_code == 422
    assert len(response.content) < 2048
    [error] = response.json()["detail"]
    assert error["truncated"] is True
    assert error["input"].startswith("xxx")


async def test_a_body_over_the_limit_is_a_json_413(sqlite_client: httpx.AsyncClient) -> None:
    league = "x" * 2 * 1024 * 1024
    response = await sqlite_client.post(
        "/admin/imports", json={**IMPORT, "league": league}, headers=AUTH
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "the request body is larger than 1048576 bytes"


async def test_without_the_token_a_body_is_refused_before_it_is_parsed(
    sqlite_client: httpx.AsyncClient,
) -> None:
    response = await sqlite_client.post(
        "/admin/imports", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
