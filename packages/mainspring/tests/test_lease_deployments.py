"""Two deployments of one app on one host, from two directories, each run their own
singleton with the default lock files; a second instance in the same directory stands by,
says once who holds the lease, and shows the holder in /debug/status."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
from process_support import ROOT, STARTUP_DEADLINE, Runner, free_port, wait_for

APP = "tests.sample_apps.singleton_app:app"
STANDBY_EVENT = "lease held by another process; standing by"


def status(port: int) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/debug/status", timeout=5).json()
    return body


def leader(port: int) -> dict[str, Any]:
    return next(s for s in status(port)["services"] if s["name"] == "leader")


def test_two_checkouts_each_run_their_singleton_and_a_standby_names_its_holder(
    runner: Runner, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"  # the default lock files live under $TMPDIR, kept apart here
    temp.mkdir(mode=0o700)
    env = {"TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    env_without_leases = {**env, "MAINSPRING_LEASE_URL": "", "MAINSPRING_APP_NAME": ""}
    checkouts = [tmp_path / "one", tmp_path / "two", tmp_path / "one"]
    ports = [free_port() for _ in checkouts]
    processes, pids = [], []
    for checkout, port, expected in zip(
        checkouts, ports, ["running", "running", "standby"], strict=True
    ):
        checkout.mkdir(exist_ok=True)
        process = runner.start(APP, "--port", str(port), env=env_without_leases, cwd=checkout)
        processes.append(process)
        pids.append(runner.wait_serving(process, port))
        wait_for(lambda: leader(port)["state"] == expected, STARTUP_DEADLINE, expected)  # noqa: B023
    assert [leader(port)["state"] for port in ports] == ["running", "running", "standby"]
    namespaces = [status(port)["app"]["lease_namespace"] for port in ports]
    assert namespaces[0] != namespaces[1]
    assert namespaces[2] == namespaces[0]
    holder = f"{socket.gethostname()}:{pids[0]} (singleton-app, namespace {namespaces[0]})"
    assert leader(ports[0])["lease_holder"] == holder
    assert leader(ports[2])["lease_holder"] == holder
    assert leader(ports[2])["reason"] == f"standby: lease held by {holder}"

    lines = [json.loads(line) for line in runner.output(processes[2]).splitlines()]
    told = [line for line in lines if line.get("event") == STANDBY_EVENT]
    assert [(line["service"], line["holder"]) for line in told] == [("leader", holder)]
