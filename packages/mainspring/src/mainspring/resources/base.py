"""`Resource`: something long-lived that the runtime opens once and closes at the end."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mainspring.services.base import Service


class Resource(ABC):
    """A pool, client or connection owned by the runtime for the life of the process."""

    name: str = ""
    """Shown in status and readiness; defaults to the class name in lower case."""

    @abstractmethod
    async def open(self) -> None:
        """Create the pool or client. Raising here fails startup if the resource is critical."""

    @abstractmethod
    async def close(self) -> None:
        """Release everything. The runtime bounds it in time and logs a failure."""

    @abstractmethod
    async def check(self) -> None:
        """Raise when the resource cannot serve; used by /ready."""

    def services(self) -> Sequence[Service]:
        """Background work the resource needs (a listener, say); the runtime supervises it."""
        return ()

    def resource_name(self) -> str:
        return self.name or type(self).__name__.lower()
