"""What `mainspring run` wires for observability: one log format in every process, access
lines, trusted proxies, metrics across workers and on a port of their own, the watchdog."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from process_support import EXIT_DEADLINE, Runner, free_port, wait_for

from mainspring.server.exitcodes import EXIT_OK, EXIT_PORT_UNAVAILABLE

APP = "tests.sample_apps.runner_obs_app:app"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as JSON; fails on the first line that is not."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}\n{text}") from None
    return lines


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "mainspring.access"]


def stop(runner: Runner, process: Any) -> str:
    process.send_signal(signal.SIGTERM)
    assert runner.wait_exit(process) == EXIT_OK
    return runner.output(process)


def test_two_workers_write_every_line_as_json(runner: Runner, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    master = runner.start(APP, "--port", str(port), "--workers", "2", env={"TMPDIR": str(temp)})
    runner.wait_serving(master, port)
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/log").status_code == 200
    assert httpx.get(f"{base}/block", timeout=EXIT_DEADLINE).status_code == 200
    wait_for(
        lambda: "event loop blocked" in runner.output(master),
        EXIT_DEADLINE,
        "the watchdog of the worker to warn",
    )
    (metrics_dir,) = temp.glob("mainspring-*/metrics/*")

    lines = json_lines(stop(runner, master))

    events = {(line["logger"], line["event"]) for line in lines}
    assert any(
        logger == "gunicorn.error" and event.startswith("Booting worker")
        for logger, event in events
    )
    assert ("uvicorn.error", "Application startup complete.") in events
    assert ("tests.runner_obs_app", "warning line") in events
    assert ("mainspring.watchdog", "event loop blocked") in events
    assert {line["route"] for line in access_lines(lines)} >= {"/ping", "/log", "/block"}
    assert not {logger for logger, _ in events} & {"uvicorn.access", "gunicorn.access"}
    assert not metrics_dir.exists(), "the metrics directory outlived the run"


def test_a_dead_workers_live_gauges_are_dropped(runner: Runner, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    master = runner.start(APP, "--port", str(port), "--workers", "2", env={"TMPDIR": str(temp)})
    worker = runner.wait_serving(master, port)  # it answered, so it counted a request in flight
    (metrics_dir,) = temp.glob("mainspring-*/metrics/*")
    in_flight_file = metrics_dir / f"gauge_livesum_{worker}.db"
    assert in_flight_file.exists()

    os.kill(worker, signal.SIGKILL)

    wait_for(lambda: not in_flight_file.exists(), EXIT_DEADLINE, "child_exit to drop its gauges")
    runner.wait_serving(master, port)


def test_a_worker_that_exits_leaves_the_metrics_directory_to_the_others(
    runner: Runner, tmp_path: Path
) -> None:
    """A worker stopped with SIGTERM leaves through the runner's own code; the directory is
    the master's, so the remaining worker and the replacement gunicorn boots keep it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    master = runner.start(APP, "--port", str(port), "--workers", "2", env={"TMPDIR": str(temp)})
    worker = runner.wait_serving(master, port)
    (metrics_dir,) = temp.glob("mainspring-*/metrics/*")

    os.kill(worker, signal.SIGTERM)

    def replaced() -> bool:
        assert master.poll() is None, f"exited {master.returncode}:\n{runner.output(master)}"
        return runner.output(master).count("Application startup complete.") == 3

    wait_for(replaced, EXIT_DEADLINE, "gunicorn to boot a worker in place of the stopped one")
    assert metrics_dir.is_dir()
    for _ in range(4):  # fresh connections, so that either worker may answer
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    stop(runner, master)
    assert not metrics_dir.exists(), "the metrics directory outlived the run"


def test_access_lines_can_go_to_a_file_of_their_own(runner: Runner, tmp_path: Path) -> None:
    access_log = tmp_path / "access.log"
    port = free_port()
    process = runner.start(APP, "--port", str(port), "--access-log", str(access_log))
    runner.wait_serving(process, port)
    httpx.get(f"http://127.0.0.1:{port}/items/7").raise_for_status()

    output = stop(runner, process)

    assert not access_lines(json_lines(output))
    routes = {line["route"] for line in access_lines(json_lines(access_log.read_text()))}
    assert "/items/{item_id}" in routes


def test_console_format_at_the_chosen_level(runner: Runner) -> None:
    port = free_port()
    process = runner.start(
        APP, "--port", str(port), "--log-format", "console", "--log-level", "WARNING"
    )
    runner.wait_serving(process, port)
    httpx.get(f"http://127.0.0.1:{port}/log").raise_for_status()

    output = stop(runner, process)

    (warning,) = [line for line in output.splitlines() if "warning line" in line]
    assert not warning.startswith("{")
    assert "info line" not in output
    assert "Application startup complete" not in output


@pytest.mark.parametrize(
    ("options", "client"),
    [
        ((), "127.0.0.1"),  # uvicorn's own proxy handling would believe loopback
        (("--trusted-proxy", "10.9.0.0/16", "--trusted-proxy", "127.0.0.1"), "203.0.113.9"),
    ],
)
def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    runner: Runner, options: tuple[str, ...], client: str
) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port), *options)
    runner.wait_serving(process, port)
    headers = {"x-forwarded-for": "203.0.113.9"}
    httpx.get(f"http://127.0.0.1:{port}/items/1", headers=headers).raise_for_status()

    lines = access_lines(json_lines(stop(runner, process)))

    (line,) = [line for line in lines if line["route"] == "/items/{item_id}"]
    assert line["client"] == client


def test_one_worker_serves_metrics_on_a_port_of_their_own(runner: Runner) -> None:
    port, metrics_port = free_port(), free_port()
    process = runner.start(APP, "--port", str(port), "--metrics-port", str(metrics_port))
    runner.wait_serving(process, port)
    httpx.get(f"http://127.0.0.1:{port}/items/1").raise_for_status()

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text

    assert 'route="/items/{item_id}"' in text


def test_a_metrics_port_in_use_exits_5(runner: Runner) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        metrics_port = holder.getsockname()[1]
        process = runner.start(
            APP, "--port", str(free_port()), "--workers", "2", "--metrics-port", str(metrics_port)
        )
        assert runner.wait_exit(process) == EXIT_PORT_UNAVAILABLE
    assert f"the metrics port cannot listen on 127.0.0.1:{metrics_port}" in runner.output(process)


def test_a_zero_watchdog_threshold_turns_the_watchdog_off(runner: Runner) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port), "--watchdog-threshold", "0")
    runner.wait_serving(process, port)
    assert httpx.get(f"http://127.0.0.1:{port}/block", timeout=EXIT_DEADLINE).status_code == 200

    lines = json_lines(stop(runner, process))

    assert "/block" in {line["route"] for line in access_lines(lines)}
    assert not [line for line in lines if line["logger"] == "mainspring.watchdog"]
