"""A pidfile locked with flock for the life of the server: proof that an instance is live.

The lock, not the file, is the evidence: a file left by a killed process is unlocked, so a
stale pidfile is never mistaken for a running instance. Forked workers inherit the lock,
so it outlives a master killed with SIGKILL for as long as any of its workers runs; the
file names the master and every worker (pid and start time, its lineage), so that a later
takeover can recognise those orphans as this instance's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import structlog

from mainspring.paths import private_dir
from mainspring.server import ports
from mainspring.server.exitcodes import EXIT_ALREADY_RUNNING, StartError

log = structlog.get_logger("mainspring.server")


ProcessRef = tuple[int, int]
"""A pid and its start time (clock ticks after boot, from /proc): one process, never a later
process that reuses the pid."""


@dataclass(frozen=True)
class PidfileInfo:
    pid: int
    app: str
    host: str
    port: int
    started: float
    start_time: int = 0
    """The master's start time; 0 in a pidfile written before it was recorded."""
    workers: tuple[ProcessRef, ...] = ()
    """The master's current workers (several workers only)."""

    @classmethod
    def from_json(cls, text: bytes) -> PidfileInfo:
        """Raises ValueError, TypeError or KeyError when `text` is not a pidfile's."""
        data = json.loads(text)
        workers = tuple((int(pid), int(start)) for pid, start in data.pop("workers", ()))
        return cls(**data, workers=workers)

    def owns(self, process: ports.ProcessInfo) -> bool:
        """True when `process` is this instance's master or one of its recorded workers."""
        if process.pid == self.pid:
            # Without the master's start time (an older pidfile) only its pid can be checked.
            return self.start_time in (0, process.start_time)
        return (process.pid, process.start_time) in self.workers


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
            return PidfileInfo.from_json(os.read(fd, 65536))
        except (ValueError, TypeError, KeyError):
            return None  # Locked but not written yet, or not ours.
    finally:
        os.close(fd)


class Pidfile:
    """Held (locked) by the process that owns the listening socket, removed on clean exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._owner = 0
        self._info: PidfileInfo | None = None
        self._written = 0

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
        me = ports.process_info(os.getpid())
        info = PidfileInfo(
            pid=os.getpid(),
            app=app,
            host=host,
            port=port,
            started=time.time(),
            start_time=me.start_time if me is not None else 0,
        )
        os.ftruncate(fd, 0)
        self._fd, self._owner, self._written = fd, os.getpid(), 0
        self._write(info)

    def record_workers(self, workers: list[ProcessRef]) -> None:
        """Name the master's current workers (the master calls it when they change)."""
        if self._info is not None and os.getpid() == self._owner:
            self._write(replace(self._info, workers=tuple(workers)))

    def _write(self, info: PidfileInfo) -> None:
        """Overwrite in place, padded with spaces (JSON ignores them): a reader never sees
        the file empty, and the locked inode stays the same."""
        assert self._fd is not None
        data = json.dumps(asdict(info)).encode()
        os.pwrite(self._fd, data.ljust(self._written), 0)
        self._info, self._written = info, max(self._written, len(data))

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
