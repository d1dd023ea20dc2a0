"""FileLeaseBackend against the real kernel: flock, inodes and a second process."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lease_support import acquire_within, holder_process

from mainspring.leases import (
    FileLeaseBackend,
    PostgresLeaseBackend,
    RedisLeaseBackend,
    lease_backend_from_url,
)
from mainspring.leases import file as file_backend
from mainspring.leases.file import lock_file_name


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[FileLeaseBackend]:
    backend = FileLeaseBackend(tmp_path / "leases")
    yield backend
    await backend.close()


async def test_lease_is_exclusive_until_released(tmp_path: Path) -> None:
    first, second = FileLeaseBackend(tmp_path), FileLeaseBackend(tmp_path)
    lease = await first.try_acquire("svc", "a")
    assert lease is not None
    assert lease.name == "svc"
    assert lease.holder == "a"
    assert lease.grace == 0
    assert await second.try_acquire("svc", "b") is None
    assert await first.try_acquire("svc", "a") is None
    assert await second.try_acquire("other", "b") is not None

    await lease.release()
    taken = await second.try_acquire("svc", "b")
    assert taken is not None
    await first.close()
    await second.close()


async def test_fencing_token_grows_across_terms_and_backends(tmp_path: Path) -> None:
    tokens = []
    for _ in range(3):
        for backend in (FileLeaseBackend(tmp_path), FileLeaseBackend(tmp_path)):
            lease = await backend.try_acquire("svc", "a")
            assert lease is not None
            tokens.append(lease.token)
            await lease.release()
    assert tokens == sorted(set(tokens))
    assert tokens[0] >= 1


async def test_renew_holds_while_held(backend: FileLeaseBackend) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    assert await lease.renew() is True
    assert await lease.renew() is True
    await lease.release()
    assert await lease.renew() is False
    await lease.release()


async def test_holder_names_the_holder_and_none_when_free(backend: FileLeaseBackend) -> None:
    assert await backend.holder("svc") is None
    lease = await backend.try_acquire("svc", "host-a:42")
    assert lease is not None
    assert await backend.holder("svc") == "host-a:42"
    assert await FileLeaseBackend(backend.directory).holder("svc") == "host-a:42"
    await lease.release()
    assert await backend.holder("svc") is None


async def test_deleted_lock_file_means_lost(backend: FileLeaseBackend) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    backend.path_for("svc").unlink()
    assert await lease.renew() is False


async def test_replaced_lock_file_means_lost(backend: FileLeaseBackend) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    path = backend.path_for("svc")
    replacement = path.with_suffix(".new")
    replacement.write_text("")
    replacement.replace(path)
    assert await lease.renew() is False
    newcomer = await backend.try_acquire("svc", "b")
    assert newcomer is not None


async def test_close_releases_held_leases(tmp_path: Path) -> None:
    backend = FileLeaseBackend(tmp_path)
    assert await backend.try_acquire("svc", "a") is not None
    await backend.close()
    other = FileLeaseBackend(tmp_path)
    assert await other.try_acquire("svc", "b") is not None
    await other.close()


async def test_creates_missing_directory(tmp_path: Path) -> None:
    backend = FileLeaseBackend(tmp_path / "a" / "b")
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    assert backend.path_for("svc").parent == tmp_path / "a" / "b"
    assert backend.path_for("svc").exists()
    await backend.close()


async def test_unusable_directory_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises((FileExistsError, NotADirectoryError)):
        await FileLeaseBackend(blocker / "leases").try_acquire("svc", "a")


def test_lock_file_names_are_safe_and_distinct() -> None:
    names = ["svc", "a/b", "a_b", "../etc/passwd", "", ".", "ünï cödé", "x" * 300]
    files = [lock_file_name(name) for name in names]
    assert len(set(files)) == len(files)
    assert files[0] == "svc.lock"
    for file in files:
        assert "/" not in file
        assert not file.startswith(".")
        assert len(file) < 100


async def test_unsafe_names_stay_inside_the_directory(backend: FileLeaseBackend) -> None:
    for name in ("../escape", "a/b", "a_b"):
        assert await backend.try_acquire(name, "a") is not None
    assert sorted(p.parent for p in backend.directory.iterdir()) == [backend.directory] * 3


async def test_standby_takes_over_when_the_holder_process_dies(tmp_path: Path) -> None:
    backend = lease_backend_from_url(str(tmp_path), "ns")
    async with holder_process(str(tmp_path), "ns", "svc") as (proc, token):
        assert await backend.try_acquire("svc", "standby") is None
        holder = f"{socket.gethostname()}:{proc.pid} (lease-holder, namespace ns)"
        assert await backend.holder("svc") == holder
        proc.kill()
        await proc.wait()
        lease = await acquire_within(backend, "svc", "standby")
    assert lease.token > token
    assert await backend.holder("svc") == "standby"
    await backend.close()


async def test_backend_from_url() -> None:
    default = lease_backend_from_url(None, "ns")
    assert isinstance(default, FileLeaseBackend)
    private = Path(tempfile.gettempdir()) / f"mainspring-{os.getuid()}"
    assert default.directory == private / "leases" / "ns"
    assert private.stat().st_mode & 0o777 == 0o700

    plain = lease_backend_from_url("/var/lib/leases", "ns")
    assert isinstance(plain, FileLeaseBackend)
    assert plain.directory == Path("/var/lib/leases/ns")
    file_url = lease_backend_from_url("file:///var/lib/leases", "ns")
    assert isinstance(file_url, FileLeaseBackend)
    assert file_url.directory == Path("/var/lib/leases/ns")
    unsafe = lease_backend_from_url("/var/lib/leases", "../Markets API")
    assert isinstance(unsafe, FileLeaseBackend)
    assert unsafe.directory.parent == Path("/var/lib/leases")

    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0"):
        redis_backend = lease_backend_from_url(url, "ns")
        assert isinstance(redis_backend, RedisLeaseBackend)
        await redis_backend.close()
    for url in (
        "postgresql://u@127.0.0.1:1/db",
        "postgres://u@127.0.0.1:1/db",
        "postgresql+asyncpg://u@127.0.0.1:1/db",
    ):
        assert isinstance(lease_backend_from_url(url, "ns"), PostgresLeaseBackend)

    with pytest.raises(ValueError, match=r"redis://.*postgresql://.*file://"):
        lease_backend_from_url("mysql://u@host/db", "ns")


async def test_lock_file_records_token_and_holder(backend: FileLeaseBackend) -> None:
    lease = await backend.try_acquire("svc", "h:1")
    assert lease is not None
    record = backend.path_for("svc").read_text()
    assert record == '{"token": 1, "holder": "h:1"}\n'


async def test_cancelled_acquire_does_not_leak_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, proceed, finished = threading.Event(), threading.Event(), threading.Event()
    real_lock = file_backend._lock

    def slow_lock(path: Path, holder: str) -> tuple[int, int] | None:
        if holder != "cancelled":
            return real_lock(path, holder)
        started.set()
        proceed.wait(30)
        try:
            return real_lock(path, holder)
        finally:
            finished.set()

    monkeypatch.setattr(file_backend, "_lock", slow_lock)
    attempt = asyncio.create_task(FileLeaseBackend(tmp_path).try_acquire("svc", "cancelled"))
    assert await asyncio.to_thread(started.wait, 30)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    proceed.set()
    assert await asyncio.to_thread(finished.wait, 30)
    lease = await acquire_within(FileLeaseBackend(tmp_path), "svc", "standby")
    await lease.release()


def test_a_private_directory_that_is_not_private_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mainspring.paths import private_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"mainspring-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(RuntimeError, match="not a private directory"):
        private_dir("leases")
    shared.rmdir()
    (tmp_path / "elsewhere").mkdir()
    shared.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RuntimeError, match="not a private directory"):
        private_dir("leases")
