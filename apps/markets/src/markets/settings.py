"""The markets service's settings: its own variables unprefixed, the runtime's as MAINSPRING_*.

`MarketsSettings` is a `MainspringSettings`, so it goes straight to `Runtime`. Its own fields
are read from plain names (``DATABASE_URL``, ``NBA_AUTO_IMPORT_ENABLED``...); the inherited
runtime fields keep their ``MAINSPRING_`` names. An empty variable counts as unset, and every
URL is checked when the settings load. Overrides in code use field names (or the runtime's
variable names): ``load_settings(MarketsSettings, database_url=..., shutdown_timeout=...)``;
anything else is rejected rather than silently ignored.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mainspring.settings import MainspringSettings
from mainspring.urls import DatabaseUrl, HttpUrl, RedisUrl


class MarketsSettings(MainspringSettings):
    """Load with `mainspring.load_settings(MarketsSettings)` for one clear error line."""

    model_config = SettingsConfigDict(env_prefix="", extra="forbid")

    database_url: DatabaseUrl = "sqlite:///./var/markets.db"
    """SQLite by default; a ``postgresql://`` URL for a server."""
    espn_base_url: HttpUrl = "https://site.api.espn.com"
    """Point at `markets replay-feed` to run without the internet."""
    nba_auto_import_enabled: bool = False
    mlb_auto_import_enabled: bool = False
    schedule_interval: float = Field(default=21600, gt=0)
    """Seconds between looks at the coming days' schedule."""
    scores_live_interval: float = Field(default=60, gt=0)
    """Seconds between score polls while a game is live or about to start."""
    scores_idle_interval: float = Field(default=900, gt=0)
    """Seconds between score polls otherwise."""
    lookahead_days: int = Field(default=7, ge=0, le=60)
    import_concurrency: int = Field(default=8, ge=1, le=64)
    """Dates fetched at once by an import."""
    redis_url: RedisUrl | None = None
    """Where the live channels meet across workers; unset, they live in this process."""
