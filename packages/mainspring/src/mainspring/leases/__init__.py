"""Leases that make a service a singleton: lock files, Redis or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mainspring.leases.base import Lease, LeaseBackend, default_holder_id
from mainspring.leases.file import FileLeaseBackend
from mainspring.paths import private_dir

if TYPE_CHECKING:
    from mainspring.leases.postgres import PostgresLeaseBackend
    from mainspring.leases.redis import RedisLeaseBackend

__all__ = [
    "FileLeaseBackend",
    "Lease",
    "LeaseBackend",
    "PostgresLeaseBackend",
    "RedisLeaseBackend",
    "default_holder_id",
    "lease_backend_from_url",
]


def __getattr__(name: str) -> object:
    """Import the Redis and PostgreSQL backends only when somebody asks for them."""
    if name == "RedisLeaseBackend":
        from mainspring.leases.redis import RedisLeaseBackend

        return RedisLeaseBackend
    if name == "PostgresLeaseBackend":
        from mainspring.leases.postgres import PostgresLeaseBackend

        return PostgresLeaseBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lease_backend_from_url(url: str | None, namespace: str) -> LeaseBackend:
    """The backend a URL names; None means lock files in the temp directory (one host)."""
    if url is None:
        return FileLeaseBackend(private_dir("leases", namespace))
    scheme, sep, rest = url.partition("://")
    if not sep:
        return FileLeaseBackend(Path(url))
    scheme = scheme.lower()
    if scheme in ("redis", "rediss"):
        from mainspring.leases.redis import RedisLeaseBackend

        return RedisLeaseBackend(url, namespace)
    if scheme.split("+", 1)[0] in ("postgres", "postgresql"):
        from mainspring.leases.postgres import PostgresLeaseBackend

        return PostgresLeaseBackend(url, namespace)
    if scheme == "file":
        return FileLeaseBackend(Path(rest))
    raise ValueError(
        f"unsupported lease URL {url!r}: use redis://, rediss://, postgresql://, "
        "postgres://, postgresql+asyncpg://, file:///path or a plain directory path"
    )
