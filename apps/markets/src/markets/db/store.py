"""Writing what the pollers see: leagues, teams, games and the markets opened on them.

Every write is an ``INSERT ... ON CONFLICT`` against a unique constraint, never a
read-then-write, so two instances (or a tick retried after a crash) cannot create a row
twice. Each function takes a batch (a day's board) and writes it in a few multi-row
statements; the single-game forms are thin wrappers. Nothing here commits: the caller's
transaction holds a tick's work together.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from markets.db.models import (
    Base,
    Game,
    League,
    Market,
    MarketEvent,
    MarketState,
    SportsImport,
    Team,
)
from markets.espn.model import LEAGUES, ParsedGame, ParsedTeam

log = structlog.get_logger("markets.db")

Insert = sqlite.Insert | postgresql.Insert
T = TypeVar("T")

CHUNK = 500
"""Rows per multi-row statement: a game binds 15 parameters, far below SQLite's limit
(32766 since 3.32; 999 before, which markets does not support)."""


LEAGUE_WRITES_LOCK = 0x6D6B7473
"""The first key of the advisory lock that `serialize_league_writes` takes ("mkts")."""


def as_utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime: SQLite gives back the stored UTC time without a zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def upsert(session: AsyncSession, model: type[Base]) -> Insert:
    """An INSERT for `model` in the session's dialect, which has ``on_conflict_do_*``."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(model)
    if dialect == "postgresql":
        return postgresql.insert(model)
    raise NotImplementedError(f"markets supports SQLite and PostgreSQL, not {dialect}")


async def ensure_leagues(session: AsyncSession) -> None:
    """Insert the known leagues that are missing (the first migration already seeds them)."""
    rows = [
        {"code": code, "name": code.upper(), "sport_path": path} for code, path in LEAGUES.items()
    ]
    await session.execute(upsert(session, League).values(rows).on_conflict_do_nothing())


async def league_id(session: AsyncSession, code: str) -> int:
    """The id of league `code`, read once per database: leagues never change."""
    key = (session.get_bind().engine.url.render_as_string(), code)
    found = _league_ids.get(key)
    if found is None:
        found = await session.scalar(select(League.id).where(League.code == code))
        if found is None:
            raise LookupError(f"unknown league {code!r}; known: {', '.join(LEAGUES)}")
        _league_ids[key] = found
    return found


_league_ids: dict[tuple[str, str], int] = {}
"""(database URL, league code) -> id: by URL, since each database numbers its own leagues."""


def chunked(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def upsert_game(
    session: AsyncSession, parsed: ParsedGame, *, now: datetime | None = None
) -> Game:
    """`upsert_games` for one game."""
    return (await upsert_games(session, [parsed], now=now))[0]


async def upsert_games(
    session: AsyncSession, games: Sequence[ParsedGame], *, now: datetime | None = None
) -> list[Game]:
    """Insert the games, or update their schedule, status and score; their teams likewise.

    One statement for the teams and one for the games (per `CHUNK` rows). Returns one
    `Game` per distinct event, in the order first seen (a repeated event's last copy
    wins), each carrying the database's current row, not a stale cached copy.
    """
    updated_at = now or datetime.now(UTC)
    latest = {(parsed.league, parsed.espn_event_id): parsed for parsed in games}
    leagues = {code: await league_id(session, code) for code, _ in latest}
    for league in sorted(set(leagues.values())):
        await serialize_league_writes(session, league)
    teams = await _upsert_teams(session, leagues, latest.values())
    rows = [
        _game_row(parsed, leagues[parsed.league], teams, updated_at) for parsed in latest.values()
    ]
    stored: dict[tuple[int, str], Game] = {}
    insert_games = upsert(session, Game)
    excluded = insert_games.excluded
    statement = insert_games.on_conflict_do_update(
        index_elements=["league_id", "espn_event_id"],
        set_={name: excluded[name] for name in GAME_FIELDS},
    ).returning(Game, sort_by_parameter_order=True)
    for chunk in chunked(rows):
        result = await session.scalars(
            statement, chunk, execution_options={"populate_existing": True}
        )
        stored.update({(game.league_id, game.espn_event_id): game for game in result})
    return [stored[leagues[code], event_id] for code, event_id in latest]


GAME_FIELDS = (
    "name",
    "start_time",
    "status",
    "status_detail",
    "completed",
    "period",
    "clock",
    "home_team_id",
    "away_team_id",
    "home_score",
    "away_score",
    "winner",
    "updated_at",
)
"""What a newer sighting of a game overwrites."""


def _game_row(
    parsed: ParsedGame, league: int, teams: dict[tuple[int, str], int], updated_at: datetime
) -> dict[str, Any]:
    return {
        "league_id": league,
        "espn_event_id": parsed.espn_event_id,
        "name": parsed.name,
        "start_time": parsed.start_time,
        "status": parsed.status,
        "status_detail": parsed.status_detail,
        "completed": parsed.completed,
        "period": parsed.period,
        "clock": parsed.clock,
        "home_team_id": teams[league, parsed.home.espn_id],
        "away_team_id": teams[league, parsed.away.espn_id],
        "home_score": parsed.home_score,
        "away_score": parsed.away_score,
        "winner": parsed.winner,
        "updated_at": updated_at,
    }


async def serialize_league_writes(session: AsyncSession, league: int) -> None:
    """Make concurrent writers of one league (both loops, every worker, an import) take
    turns until their transactions end, and see each other's work from here on.

    Two transactions that each upsert several games lock team rows in different orders
    and would otherwise deadlock on PostgreSQL: they take the league's advisory lock.
    SQLite lets one writer in at a time, but only from its first write: a write that
    changes nothing takes the database's write lock now, so that what the transaction
    reads next (the games before an update, in `markets.db.board`) is what it writes
    over. Re-entrant within a transaction, released at commit or rollback."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(LEAGUE_WRITES_LOCK, league)))
    else:
        await session.execute(
            update(League).where(League.id == league).values(code=League.code),
            execution_options={"synchronize_session": False},
        )


async def _upsert_teams(
    session: AsyncSession, leagues: dict[str, int], games: Iterable[ParsedGame]
) -> dict[tuple[int, str], int]:
    """Upsert every team the games name; (league id, ESPN team id) -> team id.

    Each team once (a doubleheader names it twice, which one ``ON CONFLICT DO UPDATE``
    statement may not touch twice), in key order.
    """
    latest: dict[tuple[int, str], ParsedTeam] = {}
    for parsed in games:
        for team in (parsed.home, parsed.away):
            latest[leagues[parsed.league], team.espn_id] = team
    rows = [
        {
            "league_id": league,
            "espn_id": espn_id,
            "abbreviation": team.abbreviation,
            "display_name": team.display_name,
        }
        for (league, espn_id), team in sorted(latest.items(), key=lambda item: item[0])
    ]
    ids: dict[tuple[int, str], int] = {}
    insert_teams = upsert(session, Team)
    excluded = insert_teams.excluded
    statement = insert_teams.on_conflict_do_update(
        index_elements=["league_id", "espn_id"],
        set_={"abbreviation": excluded.abbreviation, "display_name": excluded.display_name},
    ).returning(Team.id, Team.league_id, Team.espn_id)
    for chunk in chunked(rows):
        result = await session.execute(statement, chunk)
        ids.update({(row.league_id, row.espn_id): row.id for row in result})
    return ids


async def open_market(
    session: AsyncSession, game: Game, import_run_id: int | None, *, now: datetime | None = None
) -> bool:
    """`open_markets` for one game: True only when this call created its market."""
    return bool(await open_markets(session, [game], import_run_id, now=now))


async def open_markets(
    session: AsyncSession,
    games: Sequence[Game],
    import_run_id: int | None,
    *,
    now: datetime | None = None,
) -> list[int]:
    """Open the games' markets that do not exist yet; the ids of those this call created.

    Either way each event's `sports_imports` row is recorded (first seen by
    `import_run_id`, which a later sighting keeps) and its ``last_seen`` moved to `now`.
    Three statements (per `CHUNK` games): the markets, their "open" events, the sightings.
    """
    now = now or datetime.now(UTC)
    unique = list({game.id: game for game in games}.values())
    opened: list[int] = []
    for chunk in chunked(unique):
        opened += await _open_chunk(session, chunk, import_run_id, now)
    return opened


async def _open_chunk(
    session: AsyncSession, games: Sequence[Game], import_run_id: int | None, now: datetime
) -> list[int]:
    markets = [
        {
            "game_id": game.id,
            "question": f"Who wins {game.name}?",
            "state": MarketState.OPEN,
            "opened_at": now,
        }
        for game in games
    ]
    result = await session.execute(
        upsert(session, Market)
        .on_conflict_do_nothing(index_elements=["game_id"])
        .returning(Market.id, Market.game_id),
        markets,
    )
    created = {row.game_id: row.id for row in result}
    if created:
        events = [
            {"market_id": market_id, "kind": MarketState.OPEN, "detail": {}, "at": now}
            for market_id in created.values()
        ]
        await session.execute(insert(MarketEvent), events)
    for game in games:
        if game.id in created:
            log.info(
                "market opened",
                market_id=created[game.id],
                game_id=game.id,
                espn_event_id=game.espn_event_id,
            )
    await session.execute(
        _record_sightings(session, [game.id for game in games], import_run_id, now)
    )
    return [created[game.id] for game in games if game.id in created]


def _record_sightings(
    session: AsyncSession, game_ids: Sequence[int], import_run_id: int | None, now: datetime
) -> Insert:
    """``INSERT INTO sports_imports ... SELECT`` from the games and their markets, so the
    markets that already existed need no look-up first."""
    sightings = (
        select(
            Game.league_id,
            Game.espn_event_id,
            Market.id,
            literal(import_run_id, SportsImport.import_run_id.type),
            literal(now, SportsImport.first_seen.type),
            literal(now, SportsImport.last_seen.type),
        )
        .join(Market, Market.game_id == Game.id)
        .where(Game.id.in_(game_ids))  # SQLite needs a WHERE before ON CONFLICT here
    )
    columns = [
        "league_id",
        "espn_event_id",
        "market_id",
        "import_run_id",
        "first_seen",
        "last_seen",
    ]
    statement = upsert(session, SportsImport).from_select(columns, sightings)
    return statement.on_conflict_do_update(
        index_elements=["league_id", "espn_event_id"],
        set_={"last_seen": statement.excluded.last_seen},
    )
