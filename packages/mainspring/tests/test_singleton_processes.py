"""A killed singleton holder is replaced by a standby: two real processes, real lease servers."""

from __future__ import annotations

import signal
import socket
import time
import uuid

import httpx
import pytest
from process_support import Runner, free_port, wait_for

TAKEOVER_DEADLINE = 30.0
"""A bound for the wait, well above the Redis TTL (10 s) plus one standby retry."""


def leader_state(port: int) -> tuple[str, str | None, int | None]:
    body = httpx.get(f"http://127.0.0.1:{port}/debug/status", timeout=5).json()
    leader = next(s for s in body["services"] if s["name"] == "leader")
    return leader["state"], leader["lease_holder"], leader["fencing_token"]


def state_of(port: int) -> str:
    return leader_state(port)[0]


def take_over(runner: Runner, lease_url: str) -> tuple[float, int, int]:
    """Start two instances, SIGKILL the holder; return (seconds to takeover, old token, new)."""
    app = f"t-{uuid.uuid4().hex}"
    env = {"MAINSPRING_LEASE_URL": lease_url, "MAINSPRING_APP_NAME": app}
    ports = [free_port(), free_port()]
    processes = [
        runner.start("tests.sample_apps.singleton_app:app", "--port", str(port), env=env)
        for port in ports
    ]
    pids = [
        runner.wait_serving(process, port) for process, port in zip(processes, ports, strict=True)
    ]
    wait_for(
        lambda: sorted(state_of(port) for port in ports) == ["running", "standby"],
        TAKEOVER_DEADLINE,
        "one holder and one standby",
    )
    holder = 0 if state_of(ports[0]) == "running" else 1
    standby = 1 - holder
    _, holder_name, old_token = leader_state(ports[holder])
    standby_state, seen_holder, _ = leader_state(ports[standby])
    assert standby_state == "standby"
    assert seen_holder == holder_name
    assert holder_name == f"{socket.gethostname()}:{pids[holder]} ({app}, namespace {app})"
    assert old_token is not None

    processes[holder].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: state_of(ports[standby]) == "running", TAKEOVER_DEADLINE, "takeover")
    took = time.monotonic() - killed_at
    _, new_holder, new_token = leader_state(ports[standby])
    assert new_holder == f"{socket.gethostname()}:{pids[standby]} ({app}, namespace {app})"
    assert new_token is not None
    return took, old_token, new_token


@pytest.mark.redis
def test_redis_standby_takes_over_from_a_killed_holder(runner: Runner, redis_url: str) -> None:
    took, old, new = take_over(runner, redis_url)
    assert new > old
    print(f"redis takeover after SIGKILL: {took:.2f} s")


@pytest.mark.postgres
def test_postgres_standby_takes_over_from_a_killed_holder(
    runner: Runner, postgres_url: str
) -> None:
    took, old, new = take_over(runner, postgres_url)
    assert new > old
    print(f"postgres takeover after SIGKILL: {took:.2f} s")


def test_file_lease_standby_takes_over_from_a_killed_holder(runner: Runner) -> None:
    took, old, new = take_over(runner, str(runner.tmp_path / "leases"))
    assert new > old
    print(f"file lease takeover after SIGKILL: {took:.2f} s")
