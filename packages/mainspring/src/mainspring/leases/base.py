"""A lease makes a service a singleton across workers and replicas.

One holder at a time per name. Each successful acquisition starts a new term
whose fencing token is larger than every earlier one, so a write stamped with a
stale token can be refused downstream.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod


def holder_id(app: str, namespace: str) -> str:
    """Who holds a lease, as a standby logs it and /debug/status shows it: host and pid, then
    the app and its lease namespace, so that an unexpected holder says which deployment it is."""
    return f"{socket.gethostname()}:{os.getpid()} ({app}, namespace {namespace})"


class Lease(ABC):
    """One term of one name held by this process."""

    name: str
    holder: str
    token: int
    """The fencing token of this term (monotonic per name)."""
    renew_interval: float
    """How often the supervisor renews (or re-checks) the lease, in seconds."""
    grace: float
    """How long after the last confirmed renewal the lease may still be trusted when
    renewals fail with errors (0 means: step down at the first error)."""

    @abstractmethod
    async def renew(self) -> bool:
        """Extend or re-check the term. False: the lease is lost for certain.
        Raises when the backend cannot be reached (the supervisor applies `grace`)."""

    @abstractmethod
    async def release(self) -> None:
        """Give the lease up so a standby can take it at once. Never raises."""


class LeaseBackend(ABC):
    """Where leases live: a lock file, Redis or PostgreSQL."""

    retry_interval: float
    """How often a standby tries to acquire, in seconds."""

    @abstractmethod
    async def try_acquire(self, name: str, holder: str) -> Lease | None:
        """Take the lease if it is free; None when somebody else holds it.
        Raises when the backend cannot be reached."""

    @abstractmethod
    async def holder(self, name: str) -> str | None:
        """Who holds `name` now, if anybody (for status output)."""

    @abstractmethod
    async def close(self) -> None:
        """Release every connection of the backend."""
