"""The dashboard, rendered by the real app: services with their state, markets by state."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from markets_support import served
from sqlalchemy import select

from mainspring.resources import Database
from markets.db.models import Market
from markets.db.store import open_market, upsert_game
from markets.db.transitions import apply_game_state
from markets.espn.model import ParsedGame


async def test_shows_services_and_markets_grouped_by_state(
    database: Database,
    database_url: str,
    tmp_path: Path,
    sample_games: Callable[[str], list[ParsedGame]],
) -> None:
    expected: dict[str, str] = {}
    async with database.session() as session:
        for board in ("mlb-2025-06-04-mixed-with-postponed", "nba-2026-02-23-all-scheduled"):
            for parsed in sample_games(board):
                game = await upsert_game(session, parsed)
                await open_market(session, game, None)
                await apply_game_state(session, game)
    async with database.session() as session:
        for market in await session.scalars(select(Market)):
            expected[str(market.id)] = market.state.value

    async with served(database_url=database_url, MAINSPRING_LEASE_URL=str(tmp_path)) as client:
        response = await client.get("/")
        script = await client.get("/dashboard.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "new WebSocket" in script.text
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    rows = dict(re.findall(r'data-market-id="(\d+)" data-state="(\w+)"', page))
    assert rows == expected
    assert set(rows.values()) == {"locked", "open", "settled", "voided"}
    first = [page.index(f'data-state="{state}"') for state in ("locked", "open", "settled")]
    assert first == sorted(first)
    assert "Miami Marlins" in page
    assert 'http-equiv="refresh"' not in page  # updated live by the script instead
    assert '<script src="/dashboard.js" defer></script>' in page
    services = dict(
        re.findall(
            r'data-service="([\w-]+)">\s*<strong>[\w-]+</strong>\s*'
            r'<span class="state \w+">(\w+)</span>',
            page,
        )
    )
    assert services == {
        "status-feed": "running",
        "importer": "running",
        "nba": "disabled",
        "mlb": "disabled",
    }
    assert "NBA_AUTO_IMPORT_ENABLED is not set" in page
