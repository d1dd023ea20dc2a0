"""Shared fixtures for the markets tests: migrated databases on SQLite and PostgreSQL, games.

`database` runs each test twice, once per engine: SQLite in a temporary file, and
PostgreSQL in a database of its own created for the test and dropped after it (skipped
when the server is down, a failure when MAINSPRING_REQUIRE_SERVERS=1).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from process_support import runner
from server_support import POSTGRES_URL, require_server
from sqlalchemy.engine import make_url

from mainspring.resources.database import Database
from markets.db.models import GameStatus, Outcome
from markets.db.session import upgrade_async
from markets.espn.model import ParsedGame, ParsedTeam
from markets.espn.parser import parse_scoreboard

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"

__all__ = ["runner"]  # `mainspring run` processes, stopped at the end of each test


@pytest.fixture
def postgres_url() -> str:
    return require_server(POSTGRES_URL, "PostgreSQL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database (no tables yet) on each engine, gone after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'markets.db'}"
        return
    server = require_server(POSTGRES_URL, "PostgreSQL")
    name = f"markets_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open `Database` with every migration applied."""
    await upgrade_async(database_url)
    db = Database(database_url)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


GameFactory = Callable[..., ParsedGame]

BASE_GAME = ParsedGame(
    league="mlb",
    espn_event_id="401695827",
    name="COL @ MIA",
    start_time=datetime(2025, 6, 4, 22, 40, tzinfo=UTC),
    status=GameStatus.PRE,
    status_detail="6/4 - 6:40 PM EDT",
    completed=False,
    period=1,
    clock="0:00",
    home=ParsedTeam(espn_id="28", abbreviation="MIA", display_name="Miami Marlins"),
    away=ParsedTeam(espn_id="27", abbreviation="COL", display_name="Colorado Rockies"),
    home_score=0,
    away_score=0,
    winner=None,
)


@pytest.fixture
def make_game() -> GameFactory:
    """`make_game(status=GameStatus.IN, home_score=2, ...)`: a scheduled MLB game, changed."""

    def make(**changes: Any) -> ParsedGame:
        return replace(BASE_GAME, **changes)

    return make


def final(game: ParsedGame, home_score: int, away_score: int) -> ParsedGame:
    winner = Outcome.HOME if home_score > away_score else Outcome.AWAY
    return replace(
        game,
        status=GameStatus.POST,
        status_detail="Final",
        completed=True,
        home_score=home_score,
        away_score=away_score,
        winner=winner,
    )


@pytest.fixture
def final_game() -> Callable[[ParsedGame, int, int], ParsedGame]:
    """`final_game(game, home_score, away_score)`: the game completed, won by the higher score."""
    return final


@pytest.fixture
def sample_games() -> Callable[[str], list[ParsedGame]]:
    """`sample_games("mlb-2025-06-04-mixed-with-postponed")`: a recorded board, parsed."""

    def load(name: str) -> list[ParsedGame]:
        payload = json.loads((FIXTURES / "espn" / f"{name}.json").read_text())
        return parse_scoreboard(payload, name.split("-", 1)[0])

    return load
