"""The markets settings as a user meets them: an empty variable is unset (its service is
disabled, naming it), and bad URLs stop `mainspring run markets.main:app` with one line
naming each variable and exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from markets_support import served
from process_support import config_failure, free_port


async def test_empty_import_switches_disable_the_pollers_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for league in ("NBA", "MLB"):
        monkeypatch.setenv(f"{league}_AUTO_IMPORT_ENABLED", "")
    monkeypatch.setenv("REDIS_URL", "")
    async with served(
        database_url=f"sqlite:///{tmp_path / 'markets.db'}", MAINSPRING_LEASE_URL=str(tmp_path)
    ) as client:
        status = (await client.get("/debug/status")).json()
    services = {service["name"]: service for service in status["services"]}
    for league in ("nba", "mlb"):
        assert services[league]["state"] == "disabled"
        assert services[league]["reason"] == f"{league.upper()}_AUTO_IMPORT_ENABLED is not set"


def test_bad_urls_stop_the_run_with_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MAINSPRING_PIDFILE_DIR": str(tmp_path / "pids"),
        "DATABASE_URL": "garbage",
        "ESPN_BASE_URL": "site.api.espn.com",
        "REDIS_URL": "redis://:hunter2@127.0.0.1:99999/0",
        "MAINSPRING_LEASE_URL": "mysql://127.0.0.1/leases",
    }
    args = ["markets.main:app", "--port", str(free_port())]
    line = config_failure(args, env, cwd=tmp_path, secret="hunter2")
    for problem in (
        "DATABASE_URL: not a database URL",
        "ESPN_BASE_URL: not an HTTP URL",
        "REDIS_URL: not a Redis URL: Port out of range",
        "MAINSPRING_LEASE_URL: unsupported lease URL",
    ):
        assert problem in line
