"""Leases as lock files: one host, any number of processes, no server.

The kernel drops an ``flock`` when its holder dies, however it dies, so a
standby takes over at its next retry. The fencing counter lives in the lock
file itself and is only touched under the lock, so it grows across terms and
processes for as long as the file is kept (it is never deleted on release).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
from pathlib import Path

import structlog

from mainspring.leases.base import Lease, LeaseBackend

log = structlog.get_logger("mainspring.leases")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_RECORD_MAX = 4096


def safe_file_name(name: str) -> str:
    """`name` as one path component; altered names get a hash so two never collide."""
    safe = _UNSAFE.sub("_", name)[:64]
    if safe != name or not safe:
        safe = f"{safe}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"
    return safe


def lock_file_name(name: str) -> str:
    return f"{safe_file_name(name)}.lock"


class FileLease(Lease):
    """A term held through an open, ``flock``-ed file descriptor."""

    def __init__(
        self,
        backend: FileLeaseBackend,
        name: str,
        holder: str,
        token: int,
        path: Path,
        fd: int,
        renew_interval: float,
    ) -> None:
        self.name = name
        self.holder = holder
        self.token = token
        self.renew_interval = renew_interval
        self.grace = 0.0
        self._backend = backend
        self._path = path
        self._fd: int | None = fd

    async def renew(self) -> bool:
        """Still ours while the path names the very file we locked."""
        fd = self._fd
        if fd is None:
            return False
        return await asyncio.to_thread(_names_same_file, self._path, fd)

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        self._backend._held.discard(self)
        if fd is None:
            return
        try:
            await asyncio.to_thread(_unlock, fd)
        except OSError as exc:
            log.warning("lease release failed", lease=self.name, error=str(exc))


class FileLeaseBackend(LeaseBackend):
    """Lock files in `directory` (created when missing), one per lease name."""

    def __init__(
        self, directory: Path, retry_interval: float = 1.0, renew_interval: float = 2.0
    ) -> None:
        self.directory = Path(directory)
        self.retry_interval = retry_interval
        self.renew_interval = renew_interval
        self._held: set[FileLease] = set()

    def path_for(self, name: str) -> Path:
        return self.directory / lock_file_name(name)

    async def try_acquire(self, name: str, holder: str) -> FileLease | None:
        path = self.path_for(name)
        attempt = asyncio.get_running_loop().run_in_executor(None, _lock, path, holder)
        try:
            locked = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The thread runs on regardless: a lock it takes after all must not leak.
            attempt.add_done_callback(_drop_lock)
            raise
        if locked is None:
            return None
        fd, token = locked
        lease = FileLease(self, name, holder, token, path, fd, self.renew_interval)
        self._held.add(lease)
        return lease

    async def holder(self, name: str) -> str | None:
        return await asyncio.to_thread(_probe, self.path_for(name))

    async def close(self) -> None:
        for lease in list(self._held):
            await lease.release()


def _lock(path: Path, holder: str) -> tuple[int, int] | None:
    """Lock `path` and start a new term in it: (fd, fencing token), or None when taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        token = _start_term(fd, path, holder)
    except BaseException:
        os.close(fd)
        raise
    if token is None:
        os.close(fd)
        return None
    return fd, token


def _start_term(fd: int, path: Path, holder: str) -> int | None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    # Between open and flock the file may have been removed or replaced: a lock on
    # an unlinked file excludes nobody, so only a lock on the live path counts.
    if not _names_same_file(path, fd):
        return None
    token = _read_token(fd, path) + 1
    record = json.dumps({"token": token, "holder": holder}).encode() + b"\n"
    os.pwrite(fd, record, 0)
    os.ftruncate(fd, len(record))
    os.fsync(fd)
    return token


def _drop_lock(attempt: asyncio.Future[tuple[int, int] | None]) -> None:
    if attempt.cancelled() or attempt.exception() is not None:
        return
    locked = attempt.result()
    if locked is not None:
        _unlock(locked[0])


def _read_record(fd: int) -> dict[str, object] | None:
    raw = os.pread(fd, _RECORD_MAX, 0)
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _read_token(fd: int, path: Path) -> int:
    if os.fstat(fd).st_size == 0:
        return 0
    record = _read_record(fd)
    token = record.get("token") if record else None
    if not isinstance(token, int):
        log.warning("lease file unreadable, fencing restarts", path=str(path))
        return 0
    return token


def _names_same_file(path: Path, fd: int) -> bool:
    try:
        on_disk = os.stat(path)
        held = os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _unlock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _probe(path: Path) -> str | None:
    """The holder written in `path`, if its lock is held right now by anybody.

    The probe takes a shared lock for an instant, so an acquirer racing with it
    may find the lease busy and simply try again at its next retry.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            holder = record.get("holder") if record else None
            return holder if isinstance(holder, str) else "unknown"
        return None
    finally:
        os.close(fd)
