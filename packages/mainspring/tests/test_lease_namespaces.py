"""Lease namespaces: unrelated deployments never share a singleton, an explicit lease URL
keeps the namespace on every backend, and a standby says once who holds its lease."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from test_singleton import Leader, eventually, state

from mainspring import MainspringSettings, ManualClock, Runtime
from mainspring.leases import lease_namespace
from mainspring.urls import DatabaseUrl, HttpUrl, RedisUrl

STANDBY_EVENT = "lease held by another process; standing by"


@pytest.fixture(
    params=[
        "file",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def lease_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An explicit MAINSPRING_LEASE_URL on each backend."""
    if request.param == "file":
        return str(tmp_path / "leases")
    return str(request.getfixturevalue(f"{request.param}_url"))


class StoreSettings(MainspringSettings):
    """An app that writes to a database and maybe Redis, and reads an upstream."""

    database_url: DatabaseUrl = "sqlite:///./var/app.db"
    redis_url: RedisUrl | None = None
    upstream_url: HttpUrl = "https://api.example.com"


def runtime(clock: ManualClock, **settings: object) -> Runtime:
    return Runtime(
        settings=StoreSettings(shutdown_timeout=5, **settings),
        clock=clock,
        on_fatal=lambda message: None,
        rng=random.Random(1),
    )


def test_the_default_namespace_is_the_app_and_its_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = [tmp_path / "one", tmp_path / "two"]
    namespaces = []
    for checkout in checkouts:
        checkout.mkdir()
        monkeypatch.chdir(checkout)
        namespaces.append(lease_namespace("markets", MainspringSettings()))
    assert namespaces[0] != namespaces[1]
    assert all(namespace.startswith("markets-") for namespace in namespaces)
    (tmp_path / "link").symlink_to(checkouts[0])
    monkeypatch.chdir(tmp_path / "link")
    assert lease_namespace("markets", MainspringSettings()) == namespaces[0]
    explicit = MainspringSettings(lease_url="redis://127.0.0.1:6379/0")
    assert lease_namespace("markets", explicit) == "markets"


async def test_an_explicit_lease_url_keeps_apps_apart_and_names_the_holder(
    clock: ManualClock, lease_url: str
) -> None:
    """Two apps on one lease URL each run their singleton; a second instance of the first
    stands by, logs once who holds the lease, and shows it in its status."""
    first, other = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    with capture_logs() as logs:
        async with (
            runtime(clock, lease_url=lease_url, app_name=first) as holder,
            runtime(clock, lease_url=lease_url, app_name=other) as neighbour,
            runtime(clock, lease_url=lease_url, app_name=first) as standby,
        ):
            held = holder.supervise(Leader(), singleton=True)
            await eventually(lambda: state(held) == "running", within=30)
            apart = neighbour.supervise(Leader(), singleton=True)
            await eventually(lambda: state(apart) == "running", within=30)
            waiting = standby.supervise(Leader(), singleton=True)
            await eventually(lambda: waiting.lease_holder is not None, within=30)
            for _ in range(3):  # several retries (each does its I/O off the clock), one line
                await clock.advance(2)
                await asyncio.sleep(0.05)
            assert state(waiting) == "standby"
            status = await standby.status()
            expected = f"{socket.gethostname()}:{os.getpid()} ({first}, namespace {first})"
            assert held.lease_holder == expected
    assert waiting.lease_holder == expected
    assert waiting.reason == f"standby: lease held by {expected}"
    told = [e for e in logs if e["event"] == STANDBY_EVENT]
    assert [(e["service"], e["holder"]) for e in told] == [("leader", expected)]
    (leader,) = status["services"]
    assert (leader["state"], leader["lease_holder"]) == ("standby", expected)
    assert status["app"]["lease_namespace"] == first


async def test_default_lock_files_keep_two_checkouts_apart(
    clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(mode=0o700)
    runtimes, statuses = [], []
    for checkout in ("one", "two"):
        (tmp_path / checkout).mkdir()
        monkeypatch.chdir(tmp_path / checkout)
        runtimes.append(runtime(clock, app_name="markets"))
    async with runtimes[0], runtimes[1]:
        for rt in runtimes:
            statuses.append(rt.supervise(Leader(), singleton=True))
        await eventually(lambda: [state(s) for s in statuses] == ["running", "running"])
    assert runtimes[0].lease_namespace != runtimes[1].lease_namespace


def test_the_default_namespace_covers_the_database_and_redis_the_deployment_writes_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = lease_namespace("markets", StoreSettings())
    assert lease_namespace("markets", StoreSettings()) == base
    other_db = StoreSettings(database_url="sqlite:////tmp/markets-demo-x/markets.db")
    assert lease_namespace("markets", other_db) != base
    other_redis = StoreSettings(redis_url="redis://127.0.0.1:6379/3")
    assert lease_namespace("markets", other_redis) != base
    # An upstream read from is not where the deployment keeps its state.
    assert lease_namespace("markets", StoreSettings(upstream_url="http://127.0.0.1:9")) == base


async def test_default_lock_files_keep_two_databases_in_one_directory_apart(
    clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two demos (or two units with one WorkingDirectory) each on a database of its own
    both run their singletons."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(mode=0o700)
    monkeypatch.chdir(tmp_path)
    runtimes = [
        runtime(clock, app_name="markets", database_url=f"sqlite:///{tmp_path / name}.db")
        for name in ("first", "second")
    ]
    async with runtimes[0], runtimes[1]:
        statuses = [rt.supervise(Leader(), singleton=True) for rt in runtimes]
        await eventually(lambda: [state(s) for s in statuses] == ["running", "running"])
    assert runtimes[0].lease_namespace != runtimes[1].lease_namespace
