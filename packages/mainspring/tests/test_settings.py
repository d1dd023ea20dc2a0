"""load_settings: one clear line naming the bad environment variable, secrets never shown."""

from __future__ import annotations

import pytest

from mainspring.settings import ConfigError, MainspringSettings, load_settings


class AppSettings(MainspringSettings):
    api_key: int = 0
    db_password: int = 0
    workers: int = 1


def test_valid_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_SHUTDOWN_TIMEOUT", "3")
    assert load_settings(MainspringSettings).shutdown_timeout == 3.0


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_APP_NAME", "from-env")
    assert load_settings(MainspringSettings, app_name="given").app_name == "given"


@pytest.mark.parametrize("value", ["soon", "0", "9999"])
def test_invalid_value_names_the_variable_on_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MAINSPRING_SHUTDOWN_TIMEOUT", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(MainspringSettings)
    message = str(caught.value)
    assert "MAINSPRING_SHUTDOWN_TIMEOUT" in message
    assert f"(got {value!r})" in message
    assert "\n" not in message


def test_every_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_SHUTDOWN_TIMEOUT", "soon")
    monkeypatch.setenv("MAINSPRING_WORKERS", "many")
    with pytest.raises(ConfigError, match=r"MAINSPRING_SHUTDOWN_TIMEOUT.*; MAINSPRING_WORKERS"):
        load_settings(AppSettings)


@pytest.mark.parametrize("variable", ["MAINSPRING_API_KEY", "MAINSPRING_DB_PASSWORD"])
def test_values_of_secret_settings_are_never_shown(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "hunter2")
    with pytest.raises(ConfigError) as caught:
        load_settings(AppSettings)
    message = str(caught.value)
    assert variable in message
    assert "hunter2" not in message
