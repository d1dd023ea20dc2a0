"""The read API through the real app: filters, cursor pages, 404s, 422s and the OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from markets_support import served

from mainspring.resources import Database
from markets.db.store import open_market, upsert_game
from markets.db.transitions import apply_game_state
from markets.espn.model import ParsedGame

BOARDS = [
    "nba-2024-12-15-all-final",  # settled
    "mlb-2025-06-04-mixed-with-postponed",  # settled, one voided
    "nba-2026-02-23-all-scheduled",  # open
    "mlb-2025-05-18-mixed-in-progress-scheduled",  # locked and open
]


@pytest.fixture
async def seeded(database: Database, sample_games: Callable[[str], list[ParsedGame]]) -> int:
    """The boards' games stored as the pollers would; how many markets there are."""
    count = 0
    async with database.session() as session:
        for board in BOARDS:
            for parsed in sample_games(board):
                game = await upsert_game(session, parsed)
                count += await open_market(session, game, None)
                await apply_game_state(session, game)
    return count


@pytest.fixture
async def client(
    database_url: str, tmp_path: Path, seeded: int
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(database_url=database_url, MAINSPRING_LEASE_URL=str(tmp_path)) as client:
        yield client


async def all_markets(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/markets", params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_lists_every_market_with_its_game_and_teams(
    client: httpx.AsyncClient, seeded: int
) -> None:
    items = await all_markets(client)
    assert len(items) == seeded > 20
    assert [m["id"] for m in items] == sorted(m["id"] for m in items)
    first = items[0]
    assert first["game"]["league"] == "nba"
    assert first["game"]["home"]["abbreviation"]
    assert first["game"]["away"]["display_name"]
    assert first["game"]["start_time"].endswith("Z")
    assert first["opened_at"].endswith("Z")
    assert {m["state"] for m in items} == {"open", "locked", "settled", "voided"}


async def test_filters_by_league_state_and_start(client: httpx.AsyncClient) -> None:
    nba = await all_markets(client, league="nba")
    mlb = await all_markets(client, league="mlb")
    assert nba
    assert mlb
    assert {m["game"]["league"] for m in nba} == {"nba"}
    assert len(nba) + len(mlb) == len(await all_markets(client))

    voided = await all_markets(client, state="voided")
    assert [m["game"]["status"] for m in voided] == ["postponed"]
    settled = await all_markets(client, state="settled", league="nba")
    assert settled
    assert all(m["outcome"] in ("home", "away") for m in settled)

    june = await all_markets(client, starts_after="2025-06-04", starts_before="2025-06-06")
    assert june
    assert all("2025-06-04" <= m["game"]["start_time"][:10] <= "2025-06-05" for m in june)
    assert len(june) < len(mlb)


async def test_pages_through_everything_once_by_cursor(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/markets", params=params)).json()
        seen += [m["id"] for m in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert pages < 50
    assert seen == [m["id"] for m in await all_markets(client)]
    assert pages > 1


async def test_default_limit_is_fifty(client: httpx.AsyncClient, seeded: int) -> None:
    body = (await client.get("/markets")).json()
    assert len(body["items"]) == min(seeded, 50)


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 201}, "limit", "less than or equal to 200"),
        ({"league": "nfl"}, "league", "unknown league 'nfl'"),
        ({"state": "closed"}, "state", "'open', 'locked', 'settled' or 'voided'"),
        ({"cursor": "bm9wZQ"}, "cursor", "not a cursor"),
        ({"starts_after": "2025-06-05", "starts_before": "2025-06-01"}, "starts_before", "after"),
        ({"starts_after": "yesterday"}, "starts_after", "datetime"),
    ],
)
async def test_bad_parameters_are_422_naming_the_problem(
    client: httpx.AsyncClient, params: dict[str, Any], field: str, words: str
) -> None:
    response = await client.get("/markets", params=params)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert words in error["msg"]


async def test_one_market_with_its_game_and_events(client: httpx.AsyncClient) -> None:
    [settled, *_] = await all_markets(client, state="settled")
    response = await client.get(f"/markets/{settled['id']}")
    assert response.status_code == 200
    market = response.json()
    assert market["game"] == settled["game"]
    assert [(e["kind"], e["from_state"]) for e in market["events"]] == [
        ("open", None),
        ("locked", "open"),
        ("settled", "locked"),
    ]


async def test_one_game_with_its_market(client: httpx.AsyncClient) -> None:
    [market, *_] = await all_markets(client, state="voided")
    response = await client.get(f"/games/{market['game']['id']}")
    assert response.status_code == 200
    game = response.json()
    assert game["market_id"] == market["id"]
    assert game["status"] == "postponed"
    assert game["home"] == market["game"]["home"]


@pytest.mark.parametrize(
    ("path", "message"),
    [("/markets/999999", "market 999999 not found"), ("/games/999999", "game 999999 not found")],
)
async def test_missing_ids_are_404_with_a_message(
    client: httpx.AsyncClient, path: str, message: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["detail"] == message


async def test_openapi_documents_every_route(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    ours = {
        path: ops
        for path, ops in schema["paths"].items()
        if path.startswith(("/markets", "/games", "/admin"))
    }
    assert set(ours) == {
        "/markets",
        "/markets/{market_id}",
        "/games/{game_id}",
        "/admin/imports",
        "/admin/imports/{import_id}",
    }
    for path, ops in ours.items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            success = op["responses"].get("200") or op["responses"]["202"]
            assert "$ref" in success["content"]["application/json"]["schema"], where
            assert "422" in op["responses"], where
            if "{" in path:
                assert "404" in op["responses"], where
    components = schema["components"]["schemas"]
    for name in (
        "MarketOut",
        "MarketDetail",
        "MarketPage",
        "GameDetail",
        "ImportRequest",
        "ImportOut",
        "ImportAccepted",
        "ErrorBody",
    ):
        assert components[name].get("examples"), name
