"""Configuration from the environment, with one clear message when it is wrong."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad setting."""


class MainspringSettings(BaseSettings):
    """The runtime's own settings (`MAINSPRING_*`). Subclass to add an app's settings."""

    model_config = SettingsConfigDict(env_prefix="MAINSPRING_", extra="ignore")

    app_name: str | None = None
    """Namespace for leases and pidfiles; defaults to the FastAPI app's title."""
    admin_token: SecretStr | None = None
    """Bearer token for /debug/status; without it only loopback clients may read it."""
    shutdown_timeout: float = Field(default=10.0, gt=0, le=600)
    """The one deadline for the whole shutdown: services, then resources."""
    lease_url: str | None = None
    """Where singleton leases live: redis://..., postgresql://... or a directory for
    lock files (default: a folder in the system's temporary directory)."""


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build `cls` from the environment, turning validation errors into a ConfigError."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe(cls, exc)) from None


SECRET_WORDS = ("token", "secret", "password", "key")
"""A setting whose name holds one of these never has its value shown in an error."""


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line naming each bad environment variable, with its value unless it may be secret."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        setting = f"{prefix}{field}".upper()
        value = error.get("input")
        secret = any(word in field.lower() for word in SECRET_WORDS)
        shown = "" if secret or isinstance(value, dict) else f" (got {value!r})"
        problems.append(f"{setting}: {error['msg']}{shown}")
    return "invalid configuration: " + "; ".join(problems)
