"""load_settings: one clear line naming the bad environment variable, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from mainspring import setting
from mainspring.settings import ConfigError, MainspringSettings, load_settings
from mainspring.urls import DatabaseUrl, HttpUrl, RedisUrl


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


class Nested(BaseModel):
    retries: int = 3


class TypedSettings(MainspringSettings):
    """One field of each common type, under a prefix of its own."""

    model_config = SettingsConfigDict(env_prefix="TYPED_", env_nested_delimiter="__")

    enabled: bool = False
    count: int = 5
    ratio: float = 0.5
    name: str | None = None
    password: SecretStr | None = None
    hosts: list[str] = ["a"]
    nested: Nested = Nested()
    upstream_url: HttpUrl | None = None


EMPTY_TYPED = {
    "TYPED_ENABLED": "",
    "TYPED_COUNT": "",
    "TYPED_RATIO": "",
    "TYPED_NAME": "",
    "TYPED_PASSWORD": "",
    "TYPED_HOSTS": "",
    "TYPED_NESTED": "",
    "TYPED_NESTED__RETRIES": "",
    "TYPED_UPSTREAM_URL": "",
    "MAINSPRING_SHUTDOWN_TIMEOUT": "",
    "MAINSPRING_ADMIN_TOKEN": "",
    "MAINSPRING_LEASE_URL": "",
    "MAINSPRING_APP_NAME": "",
}


def assert_all_defaults(settings: TypedSettings) -> None:
    assert settings.model_dump() == TypedSettings.model_construct().model_dump()
    assert settings.admin_token is None
    assert settings.lease_url is None
    assert settings.shutdown_timeout == 10


def test_an_empty_variable_is_unset_for_every_type(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in EMPTY_TYPED.items():
        monkeypatch.setenv(name, value)
    assert_all_defaults(load_settings(TypedSettings))


def test_an_empty_variable_in_a_dotenv_file_is_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in EMPTY_TYPED:
        monkeypatch.delenv(name, raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f"{name}=\n" for name in EMPTY_TYPED))
    assert_all_defaults(load_settings(TypedSettings, _env_file=dotenv))

    class FromFile(TypedSettings):
        model_config = SettingsConfigDict(env_file=dotenv)

    assert load_settings(FromFile).enabled is False


def test_an_empty_variable_disables_a_gated_service_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TYPED_ENABLED", "")
    gate = setting(load_settings(TypedSettings), "enabled")
    assert not gate
    assert gate.reason == "TYPED_ENABLED is not set"


RUNTIME_VARIABLES = {
    "MAINSPRING_ADMIN_TOKEN": "s3cret",
    "MAINSPRING_APP_NAME": "typed-app",
    "MAINSPRING_SHUTDOWN_TIMEOUT": "4",
    "MAINSPRING_LEASE_URL": "redis://127.0.0.1:6379/0",
}


def test_a_prefixed_subclass_keeps_the_runtime_variable_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in RUNTIME_VARIABLES.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setenv(name.replace("MAINSPRING_", "TYPED_"), "not read")
    settings = load_settings(TypedSettings)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert (settings.app_name, settings.shutdown_timeout) == ("typed-app", 4)
    assert settings.lease_url == "redis://127.0.0.1:6379/0"
    assert setting(settings, "admin_token").reason == "MAINSPRING_ADMIN_TOKEN is not set"
    assert setting(settings, "name").reason == "TYPED_NAME is not set"


def test_runtime_settings_in_code_take_the_field_or_the_variable_name() -> None:
    assert load_settings(TypedSettings, shutdown_timeout=3).shutdown_timeout == 3
    assert load_settings(TypedSettings, MAINSPRING_SHUTDOWN_TIMEOUT=2).shutdown_timeout == 2


def test_a_bad_runtime_value_in_a_prefixed_subclass_names_the_real_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAINSPRING_SHUTDOWN_TIMEOUT", "soon")
    monkeypatch.setenv("TYPED_COUNT", "many")
    with pytest.raises(ConfigError) as caught:
        load_settings(TypedSettings)
    assert str(caught.value) == (
        "invalid configuration: MAINSPRING_SHUTDOWN_TIMEOUT: Input should be a valid number, "
        "unable to parse string as a number (got 'soon'); TYPED_COUNT: Input should be a valid "
        "integer, unable to parse string as an integer (got 'many')"
    )


def test_redefining_a_runtime_field_without_its_variable_is_refused() -> None:
    with pytest.raises(TypeError, match="MAINSPRING_SHUTDOWN_TIMEOUT"):

        class Renamed(MainspringSettings):
            model_config = SettingsConfigDict(env_prefix="RENAMED_")
            shutdown_timeout: float = 30.0

    class Kept(MainspringSettings):
        model_config = SettingsConfigDict(env_prefix="KEPT_")
        shutdown_timeout: float = Field(30.0, validation_alias="MAINSPRING_SHUTDOWN_TIMEOUT")

    assert Kept().shutdown_timeout == 30


class UrlSettings(MainspringSettings):
    model_config = SettingsConfigDict(env_prefix="")

    database_url: DatabaseUrl = "sqlite://"
    redis_url: RedisUrl | None = None
    feed_url: HttpUrl | None = None


GOOD_URLS = [
    ("DATABASE_URL", "sqlite:///./var/app.db"),
    ("DATABASE_URL", "postgresql://user:pw@127.0.0.1:5432/app"),
    ("DATABASE_URL", "postgresql+asyncpg://127.0.0.1/app"),
    ("REDIS_URL", "redis://127.0.0.1:6379/0"),
    ("REDIS_URL", "rediss://:pw@cache.example:6380"),
    ("REDIS_URL", "unix:///run/redis.sock"),
    ("FEED_URL", "http://127.0.0.1:8765"),
    ("FEED_URL", "https://site.api.espn.com/apis"),
    ("MAINSPRING_LEASE_URL", "/var/lib/app/leases"),
    ("MAINSPRING_LEASE_URL", "file:///var/lib/app/leases"),
    ("MAINSPRING_LEASE_URL", "redis://127.0.0.1:6379"),
    ("MAINSPRING_LEASE_URL", "postgres://127.0.0.1/app"),
]

BAD_URLS = [
    ("DATABASE_URL", "garbage", "not a database URL"),
    ("DATABASE_URL", "nosuchdb://127.0.0.1/app", "not a database URL"),
    ("DATABASE_URL", "mysql://127.0.0.1/app", "is not async"),
    ("DATABASE_URL", "postgresql+psycopg2://127.0.0.1/app", "is not async"),
    ("DATABASE_URL", "postgresql://127.0.0.1:99999/app", "port 99999 is out of range"),
    ("DATABASE_URL", "postgresql://127.0.0.1:port/app", "not a database URL"),
    ("REDIS_URL", "127.0.0.1:6379", "not a Redis URL"),
    ("REDIS_URL", "redis://127.0.0.1:70000", "Port out of range"),
    ("REDIS_URL", "redis://127.0.0.1:0", "port 0 is out of range"),
    ("FEED_URL", "ftp://feed.example", "not an HTTP URL"),
    ("FEED_URL", "http://", "not an HTTP URL"),
    ("FEED_URL", "http://127.0.0.1:65536", "bad port"),
    ("MAINSPRING_LEASE_URL", "mysql://127.0.0.1/app", "unsupported lease URL"),
    ("MAINSPRING_LEASE_URL", "redis://127.0.0.1:99999", "Port out of range"),
    ("MAINSPRING_LEASE_URL", "postgresql://127.0.0.1:99999/app", "port"),
]


@pytest.mark.parametrize(("variable", "url"), GOOD_URLS)
def test_good_urls_load_as_written(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, url)
    settings = load_settings(UrlSettings)
    field = variable.removeprefix("MAINSPRING_").lower()
    assert getattr(settings, field) == url


@pytest.mark.parametrize(("variable", "url", "problem"), BAD_URLS)
def test_a_bad_url_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, problem: str
) -> None:
    monkeypatch.setenv(variable, url)
    with pytest.raises(ConfigError) as caught:
        load_settings(UrlSettings)
    message = str(caught.value)
    assert message.startswith(f"invalid configuration: {variable}: ")
    assert problem in message
    assert "\n" not in message


def test_a_password_in_a_bad_url_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db.example:99999/app")
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache.example:99999/0")
    with pytest.raises(ConfigError) as caught:
        load_settings(UrlSettings)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "postgresql://app:***@db.example:99999/app" in message
    assert "REDIS_URL" in message
