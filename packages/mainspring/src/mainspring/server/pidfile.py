"""A pidfile locked with flock for the life of the server: proof that an instance is live.

The lock, not the file, is the evidence: a file left by a killed process is unlocked, so a
stale pidfile is never mistaken for a running instance.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from mainspring.paths import private_dir
from mainspring.server.exitcodes import EXIT_ALREADY_RUNNING, StartError

log = structlog.get_logger("mainspring.server")


@dataclass(frozen=True)
class PidfileInfo:
    pid: int
    app: str
    host: str
    port: int
    started: float


def pidfile_dir() -> Path:
    configured = os.environ.get("MAINSPRING_PIDFILE_DIR")
    return Path(configured) if configured else private_dir("pids")


def pidfile_path(host: str, port: int) -> Path:
    return pidfile_dir() / f"mainspring-{host}-{port}.pid"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_live(path: Path) -> PidfileInfo | None:
    """The pidfile's content when a live process holds its lock, else None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd):
            return None  # Nobody holds it: a stale file.
        try:
            return PidfileInfo(**json.loads(os.read(fd, 65536)))
        except (ValueError, TypeError):
            return None  # Locked but not written yet, or not ours.
    finally:
        os.close(fd)


class Pidfile:
    """Held (locked) by the process that owns the listening socket, removed on clean exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._owner = 0

    def acquire(self, *, app: str, host: str, port: int, timeout: float) -> None:
        """Lock and write the pidfile, waiting up to `timeout` for a previous owner to exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if _try_lock(fd) and self._is_current(fd):
                break
            os.close(fd)
            if time.monotonic() >= deadline:
                raise StartError(
                    f"{self.path} is still locked by a previous instance", EXIT_ALREADY_RUNNING
                )
            if not waited:
                log.info("pidfile waiting for previous instance", path=str(self.path))
                waited = True
            time.sleep(0.1)
        info = PidfileInfo(pid=os.getpid(), app=app, host=host, port=port, started=time.time())
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(asdict(info)).encode())
        self._fd, self._owner = fd, os.getpid()

    def _is_current(self, fd: int) -> bool:
        """False when the file was removed or replaced while we waited for its lock."""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove and unlock; a no-op in forked children (gunicorn workers) that inherited it."""
        if self._fd is None or os.getpid() != self._owner:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None
