"""Leases that make a service a singleton: lock files, Redis or PostgreSQL."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mainspring.leases.base import Lease, LeaseBackend, holder_id
from mainspring.leases.file import FileLeaseBackend, safe_file_name
from mainspring.paths import private_dir
from mainspring.urls import lease_backend_kind, store_urls

if TYPE_CHECKING:
    from mainspring.leases.postgres import PostgresLeaseBackend
    from mainspring.leases.redis import RedisLeaseBackend
    from mainspring.settings import MainspringSettings

__all__ = [
    "FileLeaseBackend",
    "Lease",
    "LeaseBackend",
    "PostgresLeaseBackend",
    "RedisLeaseBackend",
    "holder_id",
    "lease_backend_from_url",
    "lease_namespace",
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


def lease_namespace(app: str, settings: MainspringSettings) -> str:
    """Where this deployment's leases live apart from every other's.

    With an explicit lease URL, the app's name: the operator pointed every process of the
    deployment there (two deployments of one app sharing a server set MAINSPRING_APP_NAME
    apart). With the default lock files, which only this host sees, the app's name and a
    digest of the working directory and of the settings' database and Redis URLs: two
    checkouts of one app, two units started from one directory, or two demos each on a
    database of its own, never wait on each other; processes that share all of these are
    one deployment.
    """
    if settings.lease_url is not None:
        return app
    scope = [os.path.realpath(os.getcwd()), *store_urls(settings)]
    digest = hashlib.blake2b("\0".join(scope).encode(), digest_size=4).hexdigest()
    return f"{app}-{digest}"


def lease_backend_from_url(url: str | None, namespace: str) -> LeaseBackend:
    """The backend a URL names, keeping leases of `namespace` apart from any other's;
    None means lock files in this user's temporary directory (one host)."""
    if url is None:
        return FileLeaseBackend(private_dir("leases", safe_file_name(namespace)))
    kind = lease_backend_kind(url)
    if kind == "redis":
        from mainspring.leases.redis import RedisLeaseBackend

        return RedisLeaseBackend(url, namespace)
    if kind == "postgres":
        from mainspring.leases.postgres import PostgresLeaseBackend

        return PostgresLeaseBackend(url, namespace)
    _, sep, path = url.partition("://")
    return FileLeaseBackend(Path(path if sep else url) / safe_file_name(namespace))
