"""A directory that lives exactly as long as the run that made it, across forked workers.

The process that creates it holds an ``flock`` on a file inside for as long as it lives, and
the workers it forks inherit that hold. So the directory is in use while any process of the
run is alive, and the kernel drops the lock when the last one dies, however it dies. Only the
creating process removes its directory at the end; a directory whose lock nobody holds was
left by a killed run, and the next run removes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".run.lock"
_STAGING_PREFIX = ".new-"
"""A directory is built under this name and renamed once locked: the sweep skips it."""


class RunDir:
    """One run's directory under a shared base; use it as a context manager."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._owner_pid = os.getpid()

    @classmethod
    def create(cls, base: Path) -> RunDir:
        """A new directory under `base`, locked before any other process can see its name."""
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=base))
        fd = os.open(staging / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = base / staging.name.removeprefix(_STAGING_PREFIX)
            os.rename(staging, path)
        except BaseException:
            os.close(fd)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(path, fd)

    def remove(self) -> None:
        """Remove the directory, in the creating process only: a forked worker that exits
        leaves it to the others still writing there."""
        if os.getpid() != self._owner_pid:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock_fd)

    def __enter__(self) -> RunDir:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.remove()


def remove_stale_run_dirs(base: Path) -> None:
    """Remove the run directories under `base` that no live process holds."""
    try:
        entries = list(base.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith("."):
            _remove_if_unheld(entry)


def _remove_if_unheld(path: Path) -> None:
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return  # Not a run directory, or another sweep removed it just now.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Held by us now, so no process of that run is alive.
        shutil.rmtree(path, ignore_errors=True)
    except BlockingIOError:
        pass  # A process of that run is alive.
    finally:
        os.close(fd)
