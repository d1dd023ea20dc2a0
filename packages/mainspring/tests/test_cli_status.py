"""`mainspring status` against a real server that serves a realistic /debug/status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from process_support import free_port
from typer.testing import CliRunner

from mainspring.cli import cli

ROOT = Path(__file__).resolve().parents[1]
"""packages/mainspring: the directory from which `tests.sample_apps...` imports."""
TOKEN = "s3cret"  # tests/sample_apps/status.py
DEADLINE = 60.0


def serve(app: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `mainspring run app`; return it and its URL once it answers (the caller stops it)."""
    port = free_port()
    env = {**os.environ, "MAINSPRING_PIDFILE_DIR": str(tmp), "MAINSPRING_DRAIN_DELAY": "0"}
    env.pop("MAINSPRING_ADMIN_TOKEN", None)
    command = [sys.executable, "-m", "mainspring.cli", "run", app, "--port", str(port)]
    with (tmp / "server.log").open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + DEADLINE
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            stop(server)
            raise AssertionError((tmp / "server.log").read_text())
        try:
            httpx.get(f"http://127.0.0.1:{port}/ping")
            return server, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.05)


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = serve("tests.sample_apps.status:app", tmp_path_factory.mktemp("status"))
    try:
        yield url
    finally:
        stop(server)


def status(*args: str, **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["status", *args], env={"COLUMNS": "200", "MAINSPRING_ADMIN_TOKEN": "", **env}
    )
    return result.exit_code, result.stdout, result.stderr


def test_status_shows_services_and_resources(server_url: str) -> None:
    code, out, err = status(server_url, "--token", TOKEN)
    assert code == 0, err
    for text in (
        "nba-poller",
        "deposit-watcher",
        "mlb-poller",
        "MLB_ENABLED is not set",
        "running",
        "backoff",
        "host-a:4242 #17",
        "ConnectError: rpc unreachable",
        "database",
        "status-test",
        "uptime 1h02m",
        "degraded",
    ):
        assert text in out


def test_the_token_comes_from_the_environment_and_json_is_raw(server_url: str) -> None:
    code, out, _ = status(server_url, "--json", MAINSPRING_ADMIN_TOKEN=TOKEN)
    assert code == 0
    body = json.loads(out)
    assert [service["name"] for service in body["services"]] == [
        "nba-poller",
        "deposit-watcher",
        "mlb-poller",
    ]


def test_status_without_the_token_says_to_pass_it(server_url: str) -> None:
    code, out, err = status(server_url)
    assert code == 1
    assert out == ""
    assert "401" in err
    assert "--token" in err
    assert len(err.strip().splitlines()) == 1


def test_status_of_something_that_is_not_mainspring(server_url: str) -> None:
    code, _, err = status(f"{server_url}/not-json")
    assert code == 1
    assert "did not answer JSON" in err


def test_status_when_nothing_listens() -> None:
    code, _, err = status(f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "cannot connect" in err
    assert len(err.strip().splitlines()) == 1


def test_status_of_a_real_runtime_app(tmp_path: Path) -> None:
    server, url = serve("tests.sample_apps.runtime_app:app", tmp_path)
    try:
        code, out, err = status(url)
    finally:
        stop(server)
    assert code == 0, err
    assert "runtime-app" in out
    assert "heartbeat" in out.lower()
    assert f"pid {server.pid}" in out


def test_status_without_a_url_finds_the_app_from_its_pidfile(tmp_path: Path) -> None:
    server, _ = serve("tests.sample_apps.runtime_app:app", tmp_path)
    try:
        code, out, err = status(MAINSPRING_PIDFILE_DIR=str(tmp_path))
    finally:
        stop(server)
    assert code == 0, err
    assert "runtime-app" in out
    assert f"pid {server.pid}" in out


def test_status_without_a_url_when_no_app_runs_here(tmp_path: Path) -> None:
    code, out, err = status(MAINSPRING_PIDFILE_DIR=str(tmp_path))
    assert code == 1
    assert out == ""
    assert str(tmp_path) in err
    assert "pass its URL" in err
    assert len(err.strip().splitlines()) == 1
