"""Settings under a real `mainspring run`: a prefixed settings subclass still reads the
runtime's MAINSPRING_* variables, an empty variable is unset, and a bad URL found in the
lifespan is one line naming the variable and exit code 2, with one worker or several."""

from __future__ import annotations

import json

import httpx
import pytest
from faults import fault_count
from process_support import Runner, config_failure, free_port
from typer.testing import CliRunner

from mainspring.cli import cli
from mainspring.server.exitcodes import EXIT_APP_ERROR

APP = "tests.sample_apps.prefixed_settings_app:app"


def test_a_prefixed_subclass_still_honours_the_admin_token(runner: Runner) -> None:
    port = free_port()
    env = {"MAINSPRING_ADMIN_TOKEN": "s3cret-admin", "SAMPLE_POLL_ENABLED": ""}
    process = runner.start(APP, "--port", str(port), env=env)
    runner.wait_serving(process, port)
    base = f"http://127.0.0.1:{port}"
    for path in ("/debug/status", "/metrics"):
        assert httpx.get(base + path, timeout=5).status_code == 401, path
    answer = httpx.get(
        base + "/debug/status", headers={"Authorization": "Bearer s3cret-admin"}, timeout=5
    )
    assert answer.status_code == 200
    poller = next(s for s in answer.json()["services"] if s["name"] == "poller")
    assert (poller["state"], poller["reason"]) == ("disabled", "SAMPLE_POLL_ENABLED is not set")


def test_the_runner_says_where_the_app_and_its_docs_answer(runner: Runner) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port))
    runner.wait_serving(process, port)
    lines = [json.loads(line) for line in runner.output(process).splitlines()]
    (serving,) = [line for line in lines if line.get("event") == "serving"]
    assert serving["url"] == f"http://127.0.0.1:{port}"
    assert serving["docs"] == f"http://127.0.0.1:{port}/docs"
    assert httpx.get(serving["docs"], timeout=5).status_code == 200


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_url_read_in_the_lifespan_is_one_line_and_exit_2(
    runner: Runner, workers: int
) -> None:
    env = {
        **runner.env,
        "SAMPLE_DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:99999/app",
        "SAMPLE_UPSTREAM_URL": "ftp://feed.example",
        "SAMPLE_REDIS_URL": "",
    }
    args = [APP, "--port", str(free_port()), "--workers", str(workers)]
    line = config_failure(args, env)
    assert "SAMPLE_DATABASE_URL: port 99999 is out of range" in line
    assert "SAMPLE_UPSTREAM_URL: not an HTTP URL" in line
    assert "hunter2" not in line


@pytest.mark.faults
def test_two_workers_failing_alike_halt_once_with_exit_2(runner: Runner) -> None:
    """Both workers fail their lifespan at about the same moment: the second failure,
    reaped while the arbiter halts already, must not escape the halt as a traceback."""
    env = {**runner.env, "SAMPLE_UPSTREAM_URL": "ftp://feed.example", "SAMPLE_REDIS_URL": ""}
    for _ in range(fault_count(ci=4, full=20)):
        args = [APP, "--port", str(free_port()), "--workers", "2"]
        assert "SAMPLE_UPSTREAM_URL: not an HTTP URL" in config_failure(args, env)


def test_a_port_out_of_range_is_refused_with_exit_2() -> None:
    result = CliRunner().invoke(cli, ["run", APP, "--port", "99999"])
    assert result.exit_code == EXIT_APP_ERROR
    assert "--port" in result.output
    assert "65535" in result.output
