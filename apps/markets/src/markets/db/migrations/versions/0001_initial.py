"""The initial schema (exactly `markets.db.models`) and the two leagues.

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATE = sa.String(16)
"""The models' enums are stored as their values in plain strings (``native_enum=False``)."""


def upgrade() -> None:
    leagues = op.create_table(
        "leagues",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("sport_path", sa.String(64), nullable=False),
        sa.UniqueConstraint("code", name="uq_leagues_code"),
    )
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("league_id", sa.Integer, sa.ForeignKey("leagues.id"), nullable=False),
        sa.Column("espn_id", sa.String(32), nullable=False),
        sa.Column("abbreviation", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.UniqueConstraint("league_id", "espn_id", name="uq_teams_league_id_espn_id"),
    )
    op.create_table(
        "games",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("league_id", sa.Integer, sa.ForeignKey("leagues.id"), nullable=False),
        sa.Column("espn_event_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", STATE, nullable=False),
        sa.Column("status_detail", sa.String(128), nullable=False),
        sa.Column("completed", sa.Boolean, nullable=False),
        sa.Column("period", sa.Integer, nullable=False),
        sa.Column("clock", sa.String(16), nullable=False),
        sa.Column("home_team_id", sa.Integer, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("away_team_id", sa.Integer, sa.ForeignKey("teams.id"), nullable=False),
        sa.Column("home_score", sa.Integer, nullable=False),
        sa.Column("away_score", sa.Integer, nullable=False),
        sa.Column("winner", STATE, nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("league_id", "espn_event_id", name="uq_games_league_id_espn_event_id"),
    )
    op.create_index("ix_games_league_id", "games", ["league_id"])
    op.create_index("ix_games_start_time", "games", ["start_time"])
    op.create_table(
        "import_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("league_id", sa.Integer, sa.ForeignKey("leagues.id"), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("start_date", sa.Date, nullable=False),
        sa.Column("end_date", sa.Date, nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("dates_total", sa.Integer, nullable=False),
        sa.Column("dates_done", sa.Integer, nullable=False),
        sa.Column("games_seen", sa.Integer, nullable=False),
        sa.Column("markets_opened", sa.Integer, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "markets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("game_id", sa.Integer, sa.ForeignKey("games.id"), nullable=False),
        sa.Column("question", sa.String(256), nullable=False),
        sa.Column("state", STATE, nullable=False),
        sa.Column("outcome", STATE, nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("game_id", name="uq_markets_game_id"),
    )
    op.create_index("ix_markets_state", "markets", ["state"])
    op.create_table(
        "sports_imports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("league_id", sa.Integer, sa.ForeignKey("leagues.id"), nullable=False),
        sa.Column("espn_event_id", sa.String(32), nullable=False),
        sa.Column("market_id", sa.Integer, sa.ForeignKey("markets.id"), nullable=False),
        sa.Column("import_run_id", sa.Integer, sa.ForeignKey("import_runs.id"), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "league_id", "espn_event_id", name="uq_sports_imports_league_id_espn_event_id"
        ),
    )
    op.create_table(
        "market_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("market_id", sa.Integer, sa.ForeignKey("markets.id"), nullable=False),
        sa.Column("kind", STATE, nullable=False),
        sa.Column("from_state", STATE, nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_market_events_market_id", "market_events", ["market_id"])
    op.bulk_insert(
        leagues,
        [
            {"code": "nba", "name": "NBA", "sport_path": "basketball/nba"},
            {"code": "mlb", "name": "MLB", "sport_path": "baseball/mlb"},
        ],
    )


def downgrade() -> None:
    for table in (
        "market_events",
        "sports_imports",
        "markets",
        "import_runs",
        "games",
        "teams",
        "leagues",
    ):
        op.drop_table(table)
