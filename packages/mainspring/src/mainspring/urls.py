"""URL settings checked when the settings load, not when a connection is first tried.

Each type keeps the string as written (clients parse it themselves) but refuses at load
what its client would refuse later: an unknown scheme, a port outside 1-65535, a
database driver that is not async. No message repeats the URL, which may hold a password.

    class Settings(MainspringSettings):
        database_url: DatabaseUrl = "sqlite:///./var/app.db"
        redis_url: RedisUrl | None = None
        upstream_url: HttpUrl = "https://api.example.com"
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, get_args, get_origin
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo

LeaseBackendKind = Literal["file", "redis", "postgres"]

REDIS_SCHEMES = ("redis", "rediss")
POSTGRES_SCHEMES = ("postgres", "postgresql")
MAX_PORT = 65535


def check_port(port: int | None) -> None:
    """A port a client can connect to: 1-65535 (or none, for the scheme's default)."""
    if port is not None and not 1 <= port <= MAX_PORT:
        raise ValueError(f"port {port} is out of range (1-{MAX_PORT})")


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    try:
        check_port(parts.port)
    except ValueError as exc:  # urllib's own message: out of range, or not a number
        raise ValueError(f"bad port: {exc}") from None
    return parts


def check_http_url(url: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    parts = _split(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("not an HTTP URL: use http://host[:port][/path] or https://...")
    return url


def check_redis_url(url: str) -> str:
    """A URL that redis-py connects to: ``redis://``, ``rediss://`` or ``unix://``."""
    from redis.connection import parse_url

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:  # its messages name the scheme or port, never the password
        raise ValueError(f"not a Redis URL: {exc}") from None
    check_port(urlsplit(url).port)
    return url


def check_database_url(url: str) -> str:
    """A URL that `Database` opens: SQLite or PostgreSQL with an async driver (a plain
    ``sqlite://`` or ``postgresql://`` gets one)."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from mainspring.resources.database import async_url

    try:
        parsed = async_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ValueError(
            "not a database URL: use sqlite:///path/to.db or postgresql://user@host/db"
        ) from None
    if not getattr(dialect, "is_async", False):
        raise ValueError(
            f"driver {parsed.drivername!r} is not async: drop it (sqlite://, postgresql://) "
            "or name an async one (sqlite+aiosqlite://, postgresql+asyncpg://)"
        )
    check_port(parsed.port)
    return url


def lease_backend_kind(url: str) -> LeaseBackendKind:
    """Which lease backend `url` names: a directory (or ``file:///dir``), Redis or PostgreSQL."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return "file"
    scheme = scheme.lower()
    if scheme == "file":
        return "file"
    if scheme in REDIS_SCHEMES:
        check_redis_url(url)
        return "redis"
    if scheme.split("+", 1)[0] in POSTGRES_SCHEMES:
        _split(url)
        return "postgres"
    raise ValueError(
        "unsupported lease URL: use redis://, rediss://, postgresql://, postgres://, "
        "postgresql+asyncpg://, file:///path or a plain directory path"
    )


def check_lease_url(url: str) -> str:
    """A URL or directory that `lease_backend_from_url` accepts."""
    lease_backend_kind(url)
    return url


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
RedisUrl = Annotated[str, AfterValidator(check_redis_url)]
DatabaseUrl = Annotated[str, AfterValidator(check_database_url)]
LeaseUrl = Annotated[str, AfterValidator(check_lease_url)]


_WRITTEN_TO = (check_database_url, check_redis_url)
"""The checks of the URL types that name where a deployment keeps its state."""


def _checked_as_written_to(metadata: Iterable[object]) -> bool:
    return any(isinstance(m, AfterValidator) and m.func in _WRITTEN_TO for m in metadata)


def _names_a_store(field: FieldInfo) -> bool:
    """A `DatabaseUrl` or `RedisUrl` field, optional (``RedisUrl | None``) or not."""
    if _checked_as_written_to(field.metadata):
        return True
    return any(
        get_origin(arg) is Annotated and _checked_as_written_to(get_args(arg)[1:])
        for arg in get_args(field.annotation)
    )


def store_urls(settings: BaseModel) -> list[str]:
    """The values of the settings' `DatabaseUrl` and `RedisUrl` fields that are set, in
    field-name order: the places this deployment writes to."""
    fields = sorted(type(settings).model_fields.items())
    values = (getattr(settings, name) for name, field in fields if _names_a_store(field))
    return [value for value in values if value is not None]
