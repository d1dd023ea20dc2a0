"""The markets schema: leagues, teams, games, the markets on them and their audit trail.

Every idempotency rule is a unique constraint, not a read-then-write: one game per
(league, ESPN event id), one import record per (league, ESPN event id), one market
per game. State changes are conditional updates (see `markets.db.transitions`).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class GameStatus(StrEnum):
    PRE = "pre"
    IN = "in"
    POST = "post"
    POSTPONED = "postponed"
    CANCELED = "canceled"
    SUSPENDED = "suspended"


class MarketState(StrEnum):
    OPEN = "open"
    LOCKED = "locked"
    SETTLED = "settled"
    VOIDED = "voided"


class Outcome(StrEnum):
    HOME = "home"
    AWAY = "away"


class ImportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def _enum(kind: type[StrEnum]) -> Enum:
    """Store the value (``"open"``), as a plain string column that both engines share."""
    return Enum(
        kind,
        values_callable=lambda k: [m.value for m in k],
        native_enum=False,
        length=16,
        validate_strings=True,
    )


class League(Base):
    __tablename__ = "leagues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    """``nba`` or ``mlb``: the key used in URLs, settings and the API."""
    name: Mapped[str] = mapped_column(String(64))
    sport_path: Mapped[str] = mapped_column(String(64))
    """ESPN's path segment, e.g. ``basketball/nba``."""


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("league_id", "espn_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    league_id: Mapped[int] = mapped_column(ForeignKey("leagues.id"))
    espn_id: Mapped[str] = mapped_column(String(32))
    abbreviation: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(128))


class Game(Base):
    __tablename__ = "games"
    __table_args__ = (UniqueConstraint("league_id", "espn_event_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    league_id: Mapped[int] = mapped_column(ForeignKey("leagues.id"), index=True)
    espn_event_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(256))
    """ESPN's ``shortName``, e.g. ``COL @ MIA``."""
    start_time: Mapped[datetime] = mapped_column(index=True)
    """UTC."""
    status: Mapped[GameStatus] = mapped_column(_enum(GameStatus))
    status_detail: Mapped[str] = mapped_column(String(128), default="")
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    period: Mapped[int] = mapped_column(Integer, default=0)
    clock: Mapped[str] = mapped_column(String(16), default="")
    home_team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    away_team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    home_score: Mapped[int] = mapped_column(Integer, default=0)
    away_score: Mapped[int] = mapped_column(Integer, default=0)
    winner: Mapped[Outcome | None] = mapped_column(_enum(Outcome), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    league: Mapped[League] = relationship(lazy="raise")
    home_team: Mapped[Team] = relationship(foreign_keys=[home_team_id], lazy="raise")
    away_team: Mapped[Team] = relationship(foreign_keys=[away_team_id], lazy="raise")


class ImportRun(Base):
    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    league_id: Mapped[int] = mapped_column(ForeignKey("leagues.id"))
    requested_by: Mapped[str] = mapped_column(String(64))
    """``admin``, ``cli`` or ``schedule`` (the service's own look-ahead)."""
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    state: Mapped[ImportState] = mapped_column(_enum(ImportState))
    dates_total: Mapped[int] = mapped_column(Integer)
    dates_done: Mapped[int] = mapped_column(Integer, default=0)
    games_seen: Mapped[int] = mapped_column(Integer, default=0)
    markets_opened: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """ISO date -> error message, for the dates that could not be fetched."""
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Market(Base):
    __tablename__ = "markets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    game_id: Mapped[int] = mapped_column(ForeignKey("games.id"), unique=True)
    question: Mapped[str] = mapped_column(String(256))
    state: Mapped[MarketState] = mapped_column(_enum(MarketState), index=True)
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome), nullable=True)
    opened_at: Mapped[datetime] = mapped_column()
    locked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    voided_at: Mapped[datetime | None] = mapped_column(nullable=True)

    game: Mapped[Game] = relationship(lazy="raise")


class SportsImport(Base):
    """Which market an ESPN event became, and when the pollers saw it."""

    __tablename__ = "sports_imports"
    __table_args__ = (UniqueConstraint("league_id", "espn_event_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    league_id: Mapped[int] = mapped_column(ForeignKey("leagues.id"))
    espn_event_id: Mapped[str] = mapped_column(String(32))
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"))
    import_run_id: Mapped[int | None] = mapped_column(ForeignKey("import_runs.id"))
    first_seen: Mapped[datetime] = mapped_column()
    last_seen: Mapped[datetime] = mapped_column()


class MarketEvent(Base):
    """Append-only: one row per state change of a market."""

    __tablename__ = "market_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_id: Mapped[int] = mapped_column(ForeignKey("markets.id"), index=True)
    kind: Mapped[MarketState] = mapped_column(_enum(MarketState))
    """The state the market entered."""
    from_state: Mapped[MarketState | None] = mapped_column(_enum(MarketState), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column()
