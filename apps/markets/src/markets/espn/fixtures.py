"""The recorded ESPN scoreboards in ../shared/fixtures/espn, as data for the fake server.

`RecordedFeed` serves each recording on its own date (and, with `fill`, a recording on every
other date too, with fresh ids), so imports over long ranges have games to import.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES_ENV = "MARKETS_FIXTURES_DIR"
_BOARD_FILE = re.compile(r"^(?P<league>[a-z]+)-(?P<day>\d{4}-\d{2}-\d{2})-.*\.json$")


def default_fixtures_dir() -> Path:
    """`$MARKETS_FIXTURES_DIR`, else the `shared/fixtures/espn` beside the repository."""
    configured = os.environ.get(FIXTURES_ENV)
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise FileNotFoundError(f"{FIXTURES_ENV}={configured} is not a directory")
        return path
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "shared" / "fixtures" / "espn"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"ESPN fixtures not found: no shared/fixtures/espn in any parent of {here.parent}; "
        f"set {FIXTURES_ENV} to the directory holding the recorded scoreboards"
    )


@dataclass(frozen=True)
class RecordedBoard:
    league: str
    day: date
    """The date the board was requested for (from the file name)."""
    name: str
    payload: dict[str, Any]


def load_boards(fixtures_dir: Path | None = None) -> list[RecordedBoard]:
    """Every `<league>-YYYY-MM-DD-*.json` scoreboard, sorted by name (summaries are skipped)."""
    directory = fixtures_dir or default_fixtures_dir()
    boards = []
    for path in sorted(directory.glob("*.json")):
        match = _BOARD_FILE.match(path.name)
        if match is None:
            continue
        payload = json.loads(path.read_text())
        boards.append(
            RecordedBoard(match["league"], date.fromisoformat(match["day"]), path.name, payload)
        )
    if not boards:
        raise FileNotFoundError(f"no recorded scoreboards in {directory}")
    return boards


def espn_date(moment: datetime) -> str:
    """ESPN's own format: UTC, minute precision, no seconds ("2025-06-04T23:45Z")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


class RecordedFeed:
    """Serves the recordings verbatim on their dates; other dates are empty unless `fill`."""

    def __init__(self, fixtures_dir: Path | None = None, *, fill: bool = False) -> None:
        self.boards = load_boards(fixtures_dir)
        self.fill = fill
        self._by_day = {(b.league, b.day): b for b in self.boards}
        self._with_games = {
            league: [b for b in self.boards if b.league == league and b.payload.get("events")]
            for league in {b.league for b in self.boards}
        }

    def scoreboard(self, league: str, day: date) -> dict[str, Any]:
        board = self._by_day.get((league, day))
        if board is not None:
            return board.payload
        candidates = self._with_games.get(league)
        if not self.fill or not candidates:
            return {"events": []}
        return _moved(candidates[day.toordinal() % len(candidates)], day)


def _moved(board: RecordedBoard, day: date) -> dict[str, Any]:
    """A copy of `board` as if recorded on `day`: dates shifted, ids `YYYYMMDDnn`."""
    payload = copy.deepcopy(board.payload)
    shift = timedelta(days=(day - board.day).days)
    for index, event in enumerate(payload["events"]):
        event_id = f"{day:%Y%m%d}{index:02d}"
        event["id"] = event_id
        event["uid"] = re.sub(r"e:\d+$", f"e:{event_id}", str(event.get("uid", "")))
        event["date"] = _shifted(event["date"], shift)
        for competition in event.get("competitions", []):
            competition["id"] = event_id
            for key in ("date", "startDate"):
                if key in competition:
                    competition[key] = _shifted(competition[key], shift)
    return payload


def _shifted(value: str, shift: timedelta) -> str:
    return espn_date(datetime.fromisoformat(value) + shift)
