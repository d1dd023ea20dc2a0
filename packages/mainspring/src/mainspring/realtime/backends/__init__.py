"""Where channel ids, history and cross-process delivery live."""

from mainspring.realtime.backends.base import Backend
from mainspring.realtime.backends.memory import MemoryBackend

__all__ = ["Backend", "MemoryBackend"]
