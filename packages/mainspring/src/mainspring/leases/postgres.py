"""Leases as PostgreSQL session advisory locks: any number of hosts sharing one database.

Each held lease keeps its own connection, because a session-level advisory lock
lives exactly as long as its session: when the holder dies, its connection
drops and the server frees the lock. That also means the URL must reach
PostgreSQL directly or through a session-mode pooler (never transaction mode).
Fencing tokens come from a small table updated while the lock is held.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import structlog

from mainspring.leases.base import Lease, LeaseBackend

log = structlog.get_logger("mainspring.leases")

_TIMEOUT = 5.0
"""Connect and per-statement timeout: an unreachable server fails fast."""

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS mainspring_leases (
    name text PRIMARY KEY,
    fence bigint NOT NULL,
    holder text,
    acquired_at timestamptz
)
"""

_NEXT_TERM = """
INSERT INTO mainspring_leases AS l (name, fence, holder, acquired_at)
VALUES ($1, 1, $2, now())
ON CONFLICT (name) DO UPDATE
    SET fence = l.fence + 1, holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at
RETURNING fence
"""

# A bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low
# 32 bits) and objsubid 1, in the database it was taken in.
_LOCK_GRANTED = """
SELECT 1 FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
    AND classid = $1 AND objid = $2
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_HELD_BY_ME = f"SELECT EXISTS ({_LOCK_GRANTED} AND pid = pg_backend_pid())"

_HOLDER = f"SELECT holder FROM mainspring_leases WHERE name = $3 AND EXISTS ({_LOCK_GRANTED})"


def asyncpg_dsn(url: str) -> str:
    """`url` as asyncpg wants it: ``postgresql+asyncpg://`` loses its driver suffix."""
    scheme, sep, rest = url.partition("://")
    base = scheme.split("+", 1)[0].lower()
    if not sep or base not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r} (use postgresql://...)")
    return f"{base}://{rest}"


def advisory_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit lock key for `name` in `namespace`."""
    digest = hashlib.blake2b(f"{namespace}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_ids(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PostgresLease(Lease):
    """A term held through an advisory lock on a connection of its own."""

    def __init__(
        self,
        backend: PostgresLeaseBackend,
        name: str,
        holder: str,
        token: int,
        conn: Any,
        key: int,
    ) -> None:
        self.name = name
        self.holder = holder
        self.token = token
        self.renew_interval = backend.recheck_interval
        self.grace = 0.0
        self._backend = backend
        self._conn = conn
        self._key = key

    async def renew(self) -> bool:
        """Still ours while our session holds the lock; raises when the session broke."""
        if self._conn.is_closed():
            return False
        held = await self._conn.fetchval(_HELD_BY_ME, *_lock_ids(self._key))
        return bool(held)

    async def release(self) -> None:
        self._backend._held.discard(self)
        if self._conn.is_closed():
            return
        try:
            await self._conn.execute("SELECT pg_advisory_unlock($1)", self._key)
        except Exception as exc:
            log.warning("lease release failed", lease=self.name, error=str(exc))
        await _close_quietly(self._conn)


class PostgresLeaseBackend(LeaseBackend):
    """Advisory locks keyed by a hash of namespace and name, fences in ``mainspring_leases``."""

    def __init__(self, url: str, namespace: str, recheck_interval: float = 2.0) -> None:
        self._dsn = asyncpg_dsn(url)
        self.namespace = namespace
        self.recheck_interval = recheck_interval
        self.retry_interval = recheck_interval
        self._held: set[PostgresLease] = set()

    def _row_name(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    async def _connect(self) -> Any:
        return await asyncpg.connect(
            self._dsn,
            timeout=_TIMEOUT,
            command_timeout=_TIMEOUT,
            server_settings={"application_name": f"mainspring-lease:{self.namespace}"},
        )

    async def try_acquire(self, name: str, holder: str) -> PostgresLease | None:
        key = advisory_key(self.namespace, name)
        conn = await self._connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                await _close_quietly(conn)
                return None
            await _ensure_table(conn)
            token = await conn.fetchval(_NEXT_TERM, self._row_name(name), holder)
        except BaseException:
            conn.terminate()
            raise
        lease = PostgresLease(self, name, holder, int(token), conn, key)
        self._held.add(lease)
        return lease

    async def holder(self, name: str) -> str | None:
        classid, objid = _lock_ids(advisory_key(self.namespace, name))
        conn = await self._connect()
        try:
            holder = await conn.fetchval(_HOLDER, classid, objid, self._row_name(name))
        except asyncpg.UndefinedTableError:
            return None
        finally:
            await _close_quietly(conn)
        return str(holder) if holder is not None else None

    async def close(self) -> None:
        for lease in list(self._held):
            await lease.release()


async def _ensure_table(conn: Any) -> None:
    """Create the fence table; two first-ever acquirers may race to create it."""
    with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
        await conn.execute(_CREATE_TABLE)


async def _close_quietly(conn: Any) -> None:
    try:
        await conn.close(timeout=_TIMEOUT)
    except Exception as exc:
        log.warning("lease connection close failed", error=str(exc))
        conn.terminate()
