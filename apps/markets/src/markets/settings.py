"""The markets service's settings: its own variables unprefixed, the runtime's as MAINSPRING_*.

`MarketsSettings` is a `MainspringSettings`, so it goes straight to `Runtime`. Its own fields
are read from plain names (``DATABASE_URL``, ``NBA_AUTO_IMPORT_ENABLED``...), while the inherited
runtime fields keep their ``MAINSPRING_`` names through an alias. Overrides in code use those
same names: ``load_settings(MarketsSettings, database_url=..., MAINSPRING_APP_NAME=...)``;
anything else is rejected rather than silently ignored.
"""

from __future__ import annotations

from pydantic import AliasGenerator, Field
from pydantic_settings import SettingsConfigDict

from mainspring.settings import MainspringSettings


def _variable(field: str) -> str:
    """The environment variable behind `field` (matched case-insensitively)."""
    if field in MainspringSettings.model_fields:
        return f"MAINSPRING_{field.upper()}"
    return field


class MarketsSettings(MainspringSettings):
    """Load with `mainspring.load_settings(MarketsSettings)` for one clear error line."""

    model_config = SettingsConfigDict(
        env_prefix="",
        extra="forbid",
        alias_generator=AliasGenerator(validation_alias=_variable),
    )

    database_url: str = "sqlite:///./var/markets.db"
    """SQLite by default; a ``postgresql://`` URL for a server."""
    espn_base_url: str = "https://site.api.espn.com"
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
    redis_url: str | None = None
    """Where the live channels meet across workers; unset, they live in this process."""
