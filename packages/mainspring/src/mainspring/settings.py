"""Configuration from the environment, with one clear message when it is wrong.

Two rules hold for every settings class built on `MainspringSettings`:

* an empty variable is unset: ``NBA_AUTO_IMPORT_ENABLED=`` in a ``.env`` or compose
  file means the default, for every field type, from the environment or a ``.env`` file;
* the runtime's own settings keep their ``MAINSPRING_*`` names whatever ``env_prefix``
  a subclass chooses, so that the app and `mainspring run` read the same variables.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mainspring.urls import LeaseUrl

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad setting."""


class MainspringSettings(BaseSettings):
    """The runtime's own settings (`MAINSPRING_*`). Subclass to add an app's settings."""

    model_config = SettingsConfigDict(
        env_prefix="MAINSPRING_", extra="ignore", env_ignore_empty=True
    )

    app_name: str | None = Field(default=None, validation_alias="MAINSPRING_APP_NAME")
    """The app's name in leases, logs and status; defaults to the FastAPI app's title."""
    admin_token: SecretStr | None = Field(default=None, validation_alias="MAINSPRING_ADMIN_TOKEN")
    """Bearer token for the admin surface; without it only loopback requests that came
    through no proxy may use it."""
    shutdown_timeout: float = Field(
        default=10.0, gt=0, le=600, validation_alias="MAINSPRING_SHUTDOWN_TIMEOUT"
    )
    """The one deadline for the whole shutdown: services, then resources."""
    lease_url: LeaseUrl | None = Field(default=None, validation_alias="MAINSPRING_LEASE_URL")
    """Where singleton leases live: redis://..., postgresql://... or a directory for
    lock files (default: a folder per app and working directory in the system's
    temporary directory)."""

    def __init__(self, **values: Any) -> None:
        """Code may name a runtime setting by its field (``shutdown_timeout=3``) or by its
        variable (``MAINSPRING_SHUTDOWN_TIMEOUT=3``)."""
        super().__init__(
            **{_RUNTIME_VARIABLES.get(key, key): value for key, value in values.items()}
        )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for field, name in _RUNTIME_VARIABLES.items():
            if variable_name(cls, field) != name:
                raise TypeError(
                    f"{cls.__name__}.{field} must keep the variable {name} that `mainspring "
                    f'run` reads: declare it with Field(..., validation_alias="{name}")'
                )


_RUNTIME_VARIABLES: dict[str, str] = {}
"""Each runtime field and the one variable that sets it, whatever the subclass's prefix."""


def variable_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `cls` (its alias, else prefix + name)."""
    info = cls.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        alias = next((choice for choice in alias.choices if isinstance(choice, str)), None)
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(cls.model_config.get("env_prefix") or "")
    return f"{prefix}{field}".upper()


_RUNTIME_VARIABLES.update(
    {field: variable_name(MainspringSettings, field) for field in MainspringSettings.model_fields}
)


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build `cls` from the environment, turning validation errors into a ConfigError."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(cls, exc)) from None


SECRET_WORDS = ("token", "secret", "password", "key")
"""A setting whose name holds one of these never has its value shown in an error."""

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*):[^@/\s]*@")


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line naming each bad environment variable, with its value unless it may be
    secret (and never a password inside a URL)."""
    by_variable = {variable_name(cls, field): field for field in cls.model_fields}
    problems = []
    for error in exc.errors():
        head, *rest = [str(part) for part in error["loc"]] or ["?"]
        field = by_variable.get(head.upper(), head)
        setting = ".".join([variable_name(cls, field), *rest])
        value = error.get("input")
        secret = any(word in setting.lower() for word in SECRET_WORDS)
        shown = "" if secret or isinstance(value, dict) else f" (got {_hide_password(value)!r})"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{setting}: {message}{shown}")
    return "invalid configuration: " + "; ".join(problems)


def _hide_password(value: object) -> object:
    return _URL_PASSWORD.sub(r"\g<head>:***@", value) if isinstance(value, str) else value
