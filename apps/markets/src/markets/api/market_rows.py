"""A page of markets as JSON straight from Core rows: no ORM objects, no per-row models.

Builds exactly the body `MarketPage` describes (same keys, same order, UTC times with `Z`),
so the OpenAPI schema still comes from the models while a request only pays for one
`select` and one `to_json` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_json
from sqlalchemy import RowMapping

from markets.db.store import as_utc


def market_page_json(rows: Sequence[RowMapping], next_cursor: str | None) -> bytes:
    """The `MarketPage` body for `rows` (from `market_page_rows`), serialised once."""
    return to_json({"items": [market_item(row) for row in rows], "next_cursor": next_cursor})


def market_item(row: RowMapping) -> dict[str, Any]:
    """One `MarketOut` as plain data."""
    return {
        "id": row["id"],
        "question": row["question"],
        "state": row["state"],
        "outcome": row["outcome"],
        "opened_at": as_utc(row["opened_at"]),
        "locked_at": _utc_or_none(row["locked_at"]),
        "settled_at": _utc_or_none(row["settled_at"]),
        "voided_at": _utc_or_none(row["voided_at"]),
        "game": {
            "id": row["game_id"],
            "league": row["league"],
            "espn_event_id": row["espn_event_id"],
            "name": row["name"],
            "start_time": as_utc(row["start_time"]),
            "status": row["status"],
            "status_detail": row["status_detail"],
            "completed": row["completed"],
            "period": row["period"],
            "clock": row["clock"],
            "home": _team(row, "home"),
            "away": _team(row, "away"),
            "home_score": row["home_score"],
            "away_score": row["away_score"],
            "winner": row["winner"],
        },
    }


def _team(row: RowMapping, side: str) -> dict[str, Any]:
    return {
        "id": row[f"{side}_id"],
        "espn_id": row[f"{side}_espn_id"],
        "abbreviation": row[f"{side}_abbreviation"],
        "display_name": row[f"{side}_display_name"],
    }


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
