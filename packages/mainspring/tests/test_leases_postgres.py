"""PostgresLeaseBackend against a real PostgreSQL, each test in a schema of its own."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from lease_support import acquire_within, holder_process

from mainspring.leases import PostgresLeaseBackend
from mainspring.leases.postgres import advisory_key, asyncpg_dsn

pytestmark = pytest.mark.postgres


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test server (conftest skips or fails when it is down)."""
    conn = await asyncpg.connect(asyncpg_dsn(postgres_url), timeout=5)
    yield conn
    await conn.close()


@pytest.fixture
async def pg_url(admin: asyncpg.Connection, postgres_url: str) -> AsyncIterator[str]:
    """The server URL with a fresh schema first on the search path (so a fresh lease table)."""
    schema = f"lease_test_{uuid.uuid4().hex}"
    await admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{separator}search_path={schema}"
    await admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def backend(pg_url: str, namespace: str) -> AsyncIterator[PostgresLeaseBackend]:
    backend = PostgresLeaseBackend(pg_url, namespace)
    yield backend
    await backend.close()


async def test_lease_is_exclusive_until_released(pg_url: str, namespace: str) -> None:
    first = PostgresLeaseBackend(pg_url, namespace)
    second = PostgresLeaseBackend(pg_url, namespace)
    lease = await first.try_acquire("svc", "a")
    assert lease is not None
    assert (lease.name, lease.holder, lease.grace) == ("svc", "a", 0)
    assert await second.try_acquire("svc", "b") is None
    assert await first.try_acquire("svc", "a") is None
    assert await second.try_acquire("other", "b") is not None
    assert await PostgresLeaseBackend(pg_url, "another-namespace").holder("svc") is None

    await lease.release()
    await lease.release()
    assert await second.try_acquire("svc", "b") is not None
    await first.close()
    await second.close()


async def test_fencing_token_grows_across_terms(
    pg_url: str, namespace: str, admin: asyncpg.Connection
) -> None:
    backends = [PostgresLeaseBackend(pg_url, namespace) for _ in range(2)]
    tokens = []
    for _ in range(3):
        for backend in backends:
            lease = await backend.try_acquire("svc", f"holder-{len(tokens)}")
            assert lease is not None
            tokens.append(lease.token)
            await lease.release()
    assert tokens == [1, 2, 3, 4, 5, 6]
    schema = pg_url.rpartition("search_path=")[2]
    row = await admin.fetchrow(
        f"SELECT fence, holder, acquired_at FROM {schema}.mainspring_leases WHERE name = $1",
        f"{namespace}:svc",
    )
    assert row is not None
    assert (row["fence"], row["holder"]) == (6, "holder-5")
    assert row["acquired_at"] is not None


async def test_first_acquirers_race_to_create_the_table(pg_url: str, namespace: str) -> None:
    backends = [PostgresLeaseBackend(pg_url, namespace) for _ in range(8)]
    leases = await asyncio.gather(
        *(backend.try_acquire(f"svc-{i}", "a") for i, backend in enumerate(backends))
    )
    assert [lease.token if lease else None for lease in leases] == [1] * 8
    for backend in backends:
        await backend.close()


async def test_renew_holds_while_held(backend: PostgresLeaseBackend) -> None:
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    assert lease.renew_interval == backend.recheck_interval
    assert await lease.renew() is True
    assert await lease.renew() is True
    await lease.release()
    assert await lease.renew() is False


async def test_holder_names_the_holder_and_none_when_free(backend: PostgresLeaseBackend) -> None:
    assert await backend.holder("svc") is None
    lease = await backend.try_acquire("svc", "host-a:42")
    assert lease is not None
    assert await backend.holder("svc") == "host-a:42"
    await lease.release()
    assert await backend.holder("svc") is None


async def test_terminated_session_means_lost(
    pg_url: str, namespace: str, admin: asyncpg.Connection
) -> None:
    backend = PostgresLeaseBackend(pg_url, namespace)
    lease = await backend.try_acquire("svc", "a")
    assert lease is not None
    pids = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
        f"mainspring-lease:{namespace}",
    )
    assert len(pids) == 1
    assert await admin.fetchval("SELECT pg_terminate_backend($1, 10000)", pids[0]["pid"])

    try:
        renewed = await lease.renew()
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        renewed = None
    assert renewed is not True
    standby = PostgresLeaseBackend(pg_url, namespace)
    taken = await standby.try_acquire("svc", "b")
    assert taken is not None
    assert taken.token > lease.token
    await lease.release()
    assert await standby.holder("svc") == "b"
    await standby.close()
    await backend.close()


async def test_unreachable_server_raises_promptly(namespace: str) -> None:
    backend = PostgresLeaseBackend("postgresql://postgres@127.0.0.1:1/test", namespace)
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionRefusedError):
            await backend.try_acquire("svc", "a")
    await backend.close()


async def test_standby_takes_over_when_the_holder_process_dies(pg_url: str, namespace: str) -> None:
    backend = PostgresLeaseBackend(pg_url, namespace)
    async with holder_process(pg_url, namespace, "svc") as (proc, token):
        assert await backend.try_acquire("svc", "standby") is None
        holder = f"{socket.gethostname()}:{proc.pid} (lease-holder, namespace {namespace})"
        assert await backend.holder("svc") == holder
        proc.kill()
        await proc.wait()
        lease = await acquire_within(backend, "svc", "standby")
    assert lease.token > token
    await backend.close()


def test_url_forms() -> None:
    for url in (
        "postgresql://u@h:5432/db",
        "postgres://u@h:5432/db",
        "postgresql+asyncpg://u@h:5432/db",
    ):
        assert asyncpg_dsn(url).endswith("://u@h:5432/db")
        assert "+" not in asyncpg_dsn(url)
    with pytest.raises(ValueError, match="postgresql://"):
        asyncpg_dsn("mysql://u@h/db")


def test_advisory_key_is_stable_and_namespaced() -> None:
    # Replicas of different releases must agree on the key, so it may never change.
    assert advisory_key("ns", "svc") == -5920406626871196166
    assert advisory_key("ns", "svc") != advisory_key("ns2", "svc")
    assert advisory_key("ns", "a:b") != advisory_key("ns:a", "b")
