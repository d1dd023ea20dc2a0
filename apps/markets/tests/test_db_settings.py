"""MarketsSettings: its own variables unprefixed, the runtime's still MAINSPRING_*."""

from __future__ import annotations

import pytest

from mainspring.settings import ConfigError, load_settings
from markets.settings import MarketsSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in MarketsSettings.model_fields:
        monkeypatch.delenv(field.upper(), raising=False)
    settings = load_settings(MarketsSettings)
    assert settings.database_url == "sqlite:///./var/markets.db"
    assert settings.espn_base_url == "https://site.api.espn.com"
    assert (settings.nba_auto_import_enabled, settings.mlb_auto_import_enabled) == (False, False)
    assert (settings.schedule_interval, settings.scores_live_interval) == (21600, 60)
    assert (settings.scores_idle_interval, settings.lookahead_days) == (900, 7)
    assert settings.import_concurrency == 8


def test_own_variables_are_unprefixed_and_the_runtimes_keep_their_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/markets")
    monkeypatch.setenv("NBA_AUTO_IMPORT_ENABLED", "1")
    monkeypatch.setenv("MAINSPRING_APP_NAME", "markets")
    monkeypatch.setenv("SHUTDOWN_TIMEOUT", "not read")
    settings = load_settings(MarketsSettings)
    assert settings.database_url == "postgresql://db/markets"
    assert settings.nba_auto_import_enabled is True
    assert settings.app_name == "markets"
    assert settings.shutdown_timeout == 10


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORES_LIVE_INTERVAL", "0")
    monkeypatch.setenv("MAINSPRING_SHUTDOWN_TIMEOUT", "soon")
    with pytest.raises(ConfigError) as caught:
        load_settings(MarketsSettings)
    assert "MAINSPRING_SHUTDOWN_TIMEOUT:" in str(caught.value)
    assert "; SCORES_LIVE_INTERVAL:" in str(caught.value)


def test_overrides_use_field_or_variable_names_and_others_are_refused() -> None:
    settings = load_settings(
        MarketsSettings, database_url="sqlite://", MAINSPRING_SHUTDOWN_TIMEOUT=2
    )
    assert (settings.database_url, settings.shutdown_timeout) == ("sqlite://", 2)
    assert load_settings(MarketsSettings, shutdown_timeout=3).shutdown_timeout == 3
    with pytest.raises(ConfigError, match="SHUTDOWN_TIMEOUTS: Extra inputs are not permitted"):
        load_settings(MarketsSettings, shutdown_timeouts=2)
