"""`mainspring run` in real processes: draining, exit codes, safe takeover, gunicorn workers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from process_support import EXIT_DEADLINE, ROOT, STARTUP_DEADLINE, Runner, free_port, wait_for

from mainspring.server.exitcodes import (
    EXIT_ALREADY_RUNNING,
    EXIT_APP_ERROR,
    EXIT_OK,
    EXIT_PORT_UNAVAILABLE,
    EXIT_STARTUP_FAILURE,
)


def test_sigterm_lets_a_slow_request_finish_then_exits_0(runner: Runner) -> None:
    port = free_port()
    process = runner.start("tests.sample_apps.slow:app", "--port", str(port))
    runner.wait_serving(process, port)
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/slow", timeout=EXIT_DEADLINE)
            result["status"] = response.status_code
        except httpx.HTTPError as exc:
            result["error"] = exc

    client = threading.Thread(target=slow_request)
    client.start()
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/in-flight").json()["in_flight"] == 1,
            STARTUP_DEADLINE,
            "the slow request to reach the app",
        )
        process.send_signal(signal.SIGTERM)
        assert runner.wait_exit(process) == EXIT_OK
    finally:
        client.join(timeout=EXIT_DEADLINE)
    assert result == {"status": 200}
    assert not list((runner.tmp_path / "pids").glob("*.pid")), "pidfile left behind"


def test_a_requested_exit_code_becomes_the_process_exit_code(runner: Runner) -> None:
    port = free_port()
    process = runner.start("tests.sample_apps.slow:app", "--port", str(port))
    runner.wait_serving(process, port)
    httpx.post(f"http://127.0.0.1:{port}/fail")
    assert runner.wait_exit(process) == EXIT_STARTUP_FAILURE


def test_takeover_stops_the_running_instance_and_serves(runner: Runner) -> None:
    port = free_port()
    first = runner.start("tests.sample_apps.slow:app", "--port", str(port))
    runner.wait_serving(first, port)

    second = runner.start("tests.sample_apps.slow:app", "--port", str(port), "--takeover")

    assert runner.wait_exit(first) == EXIT_OK
    assert runner.wait_serving(second, port) == second.pid
    pidfile = runner.tmp_path / "pids" / f"mainspring-127.0.0.1-{port}.pid"
    assert json.loads(pidfile.read_text())["pid"] == second.pid


def test_without_takeover_a_second_instance_exits_4_and_the_first_keeps_serving(
    runner: Runner,
) -> None:
    port = free_port()
    first = runner.start("tests.sample_apps.slow:app", "--port", str(port))
    runner.wait_serving(first, port)

    second = runner.start("tests.sample_apps.slow:app", "--port", str(port))

    assert runner.wait_exit(second) == EXIT_ALREADY_RUNNING
    output = runner.output(second)
    assert f"pid {first.pid}" in output
    assert "--takeover" in output
    assert runner.wait_serving(first, port) == first.pid


def test_a_port_held_by_another_program_is_never_taken_over(runner: Runner) -> None:
    port = free_port()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1', {port}))\n"
            "s.listen()\n"
            "time.sleep(120)\n",
        ]
    )
    try:
        wait_for(lambda: _accepts(port), STARTUP_DEADLINE, "the unrelated server")
        # A stale pidfile naming our app and the holder's pid must not fool the runner:
        # nobody holds its lock.
        pids = runner.tmp_path / "pids"
        pids.mkdir()
        (pids / f"mainspring-127.0.0.1-{port}.pid").write_text(
            json.dumps(
                {
                    "pid": holder.pid,
                    "app": "tests.sample_apps.slow:app",
                    "host": "127.0.0.1",
                    "port": port,
                    "started": 0.0,
                }
            )
        )

        process = runner.start("tests.sample_apps.slow:app", "--port", str(port), "--takeover")

        assert runner.wait_exit(process) == EXIT_PORT_UNAVAILABLE
        assert f"pid {holder.pid}" in runner.output(process)
        assert holder.poll() is None
        assert _accepts(port)
    finally:
        holder.kill()
        holder.wait(timeout=10)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_two_workers_serve_and_sigterm_exits_0(runner: Runner) -> None:
    port = free_port()
    master = runner.start("tests.sample_apps.slow:app", "--port", str(port), "--workers", "2")
    worker_pid = runner.wait_serving(master, port)
    assert worker_pid != master.pid

    master.send_signal(signal.SIGTERM)

    assert runner.wait_exit(master) == EXIT_OK
    wait_for(lambda: not _running(worker_pid), EXIT_DEADLINE, "the worker to exit")


def test_takeover_replaces_a_gunicorn_instance(runner: Runner) -> None:
    port = free_port()
    master = runner.start("tests.sample_apps.slow:app", "--port", str(port), "--workers", "2")
    worker_pid = runner.wait_serving(master, port)

    single = runner.start("tests.sample_apps.slow:app", "--port", str(port), "--takeover")

    assert runner.wait_exit(master) == EXIT_OK
    assert not _running(worker_pid)
    assert runner.wait_serving(single, port) == single.pid


def test_a_critical_failure_in_a_worker_halts_gunicorn_with_3(runner: Runner) -> None:
    port = free_port()
    master = runner.start("tests.sample_apps.slow:app", "--port", str(port), "--workers", "2")
    runner.wait_serving(master, port)

    httpx.post(f"http://127.0.0.1:{port}/fail")

    assert runner.wait_exit(master) == EXIT_STARTUP_FAILURE


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("tests.sample_apps.missing_import:app", "mainspring_no_such_module"),
        ("tests.sample_apps.bad_config:app", "MAINSPRING_SHUTDOWN_TIMEOUT"),
        ("tests.sample_apps.slow:no_such_app", "no_such_app"),
    ],
)
def test_an_app_that_cannot_load_exits_2_with_one_line(
    runner: Runner, app: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mainspring.cli", "run", app, "--port", str(free_port())],
        cwd=ROOT,
        env=runner.env,
        capture_output=True,
        text=True,
        timeout=STARTUP_DEADLINE,
    )
    assert result.returncode == EXIT_APP_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mainspring: ")
    assert message in lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_the_app_imports_exits_0_with_one_line(
    runner: Runner, sig: signal.Signals, workers: str
) -> None:
    """Any app, not only the demo: the signal waits for the import, then the run ends."""
    port = free_port()
    markers = runner.tmp_path
    process = runner.start(
        "tests.sample_apps.slow_import:app",
        "--port",
        str(port),
        "--workers",
        workers,
        env={"SLOW_IMPORT_MARKERS": str(markers)},
    )
    wait_for((markers / "importing").exists, STARTUP_DEADLINE, "the import to start")

    process.send_signal(sig)
    (markers / "go").touch()

    code = runner.wait_exit(process)
    output = runner.output(process)
    assert code == EXIT_OK, output
    assert "Traceback" not in output
    assert output.count("stopped before serving") == 1, output
    assert sig.name in output
    with pytest.raises(httpx.ConnectError):  # nothing was left serving
        httpx.get(f"http://127.0.0.1:{port}/ping")
