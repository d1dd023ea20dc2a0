"""The one shutdown deadline under `mainspring run`, with one worker and with two: naive
services stop, are cancelled or are ended by it, and the exit code says which; a master
killed with SIGKILL takes its workers along, and `--takeover` replaces any it left behind."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from faults import fault_count
from process_support import (
    EXIT_DEADLINE,
    STARTUP_DEADLINE,
    Runner,
    accepts,
    free_port,
    running,
    wait_for,
)

from mainspring.server import ports
from mainspring.server.deadline import FORCED_EXIT_GRACE
from mainspring.server.exitcodes import (
    EXIT_OK,
    EXIT_PORT_UNAVAILABLE,
    EXIT_STOP_CANCELLED,
    EXIT_STOP_KILLED,
)

APP = "tests.sample_apps.naive_services:app"
GRACEFUL_TIMEOUT = 1
SHUTDOWN_TIMEOUT = 2
STOP_DEADLINE = GRACEFUL_TIMEOUT + SHUTDOWN_TIMEOUT
SLACK = 10.0
"""Generous: the machine is shared. The old behaviour took 28 s, or for ever."""


def start(runner: Runner, shape: str, port: int, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return runner.start(
        APP,
        "--port",
        str(port),
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT),
        *args,
        env={
            "NAIVE_SHAPE": shape,
            "NAIVE_MARKERS": str(runner.tmp_path),
            "MAINSPRING_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
            **env,
        },
    )


def block_a_tick(runner: Runner, port: int) -> int:
    """Arm the blocking tick in the worker that answers; return its pid once it blocks."""
    pid = int(httpx.post(f"http://127.0.0.1:{port}/block").json()["pid"])
    marker = runner.tmp_path / f"blocked-{pid}"
    wait_for(marker.exists, STARTUP_DEADLINE, "the tick to block")
    return pid


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("sleep-loop", EXIT_OK),
        ("ignores-stop", EXIT_STOP_CANCELLED),
        ("blocking-tick", EXIT_STOP_KILLED),
    ],
)
def test_sigterm_stops_a_naive_service_within_the_deadline(
    runner: Runner, shape: str, expected: int, workers: str
) -> None:
    port = free_port()
    process = start(runner, shape, port, "--workers", workers)
    runner.wait_serving(process, port)
    if shape == "blocking-tick":
        block_a_tick(runner, port)

    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = runner.wait_exit(process)
    took = time.monotonic() - sent

    output = runner.output(process)
    assert code == expected, output
    assert took < STOP_DEADLINE + FORCED_EXIT_GRACE + SLACK, output
    if shape == "blocking-tick":
        assert "shutdown deadline passed; exiting" in output
        assert "naive_services.py" in output  # the blocking stack names the tick
    else:  # Each worker's runtime finished its shutdown: none had to be killed.
        events = [json.loads(line).get("event") for line in output.splitlines() if line[:1] == "{"]
        assert events.count("runtime stopped") == int(workers), output


def children(pid: int) -> list[int]:
    return [child.pid for child in psutil.Process(pid).children()]


@pytest.fixture
def orphans() -> Iterator[list[psutil.Process]]:
    """Workers a test left orphaned on purpose: killed at the end if they still run."""
    left: list[psutil.Process] = []
    yield left
    for process in left:
        if process.is_running():  # psutil tells a reused pid apart by its start time
            process.kill()


@pytest.mark.faults
def test_workers_die_with_a_master_killed_by_sigkill(
    runner: Runner, orphans: list[psutil.Process]
) -> None:
    for _ in range(fault_count(ci=1, full=10)):
        kill_the_master_and_see_its_workers_exit(runner, orphans)


def kill_the_master_and_see_its_workers_exit(runner: Runner, orphans: list[psutil.Process]) -> None:
    port = free_port()
    master = start(runner, "sleep-loop", port, "--workers", "2")
    runner.wait_serving(master, port)
    wait_for(lambda: len(children(master.pid)) == 2, STARTUP_DEADLINE, "two workers")
    workers = children(master.pid)
    orphans.extend(psutil.Process(pid) for pid in workers)

    master.kill()
    master.wait(timeout=EXIT_DEADLINE)

    wait_for(
        lambda: not any(running(pid) for pid in workers),
        STOP_DEADLINE + FORCED_EXIT_GRACE + SLACK,
        "the orphaned workers to exit",
    )


def test_takeover_replaces_the_orphaned_workers_of_a_killed_master(
    runner: Runner, orphans: list[psutil.Process]
) -> None:
    port = free_port()
    # A worker stuck in a blocking call outlives its master's death for a while (its own
    # deadline is long here); a new instance must recognise it and replace it.
    master = start(
        runner,
        "blocking-tick",
        port,
        "--workers",
        "2",
        MAINSPRING_SHUTDOWN_TIMEOUT="120",
        NAIVE_BLOCK_SECONDS="120",
    )
    runner.wait_serving(master, port)
    stuck = block_a_tick(runner, port)
    orphans.extend(psutil.Process(pid) for pid in children(master.pid))
    master.kill()
    master.wait(timeout=EXIT_DEADLINE)
    assert running(stuck)

    # Its own short stop timeout bounds how long it waits for the stuck orphan.
    successor = start(runner, "sleep-loop", port, "--takeover", MAINSPRING_SHUTDOWN_TIMEOUT="1")
    # Until the takeover ends them, the other orphan may still answer on the old socket.
    wait_for(lambda: not running(stuck), STARTUP_DEADLINE, "the takeover to end the orphans")

    assert runner.wait_serving(successor, port) == successor.pid
    output = runner.output(successor)
    assert "orphaned workers" in output
    assert str(stuck) in output


@pytest.fixture
def foreign_holder() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A program that is not ours listening on a port: the program and the port."""
    port = free_port()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, time\n"
            "s = socket.socket()\n"
            f"s.bind(('127.0.0.1', {port}))\n"
            "s.listen()\n"
            "time.sleep(120)\n",
        ]
    )
    try:
        wait_for(lambda: accepts(port), STARTUP_DEADLINE, "the unrelated server")
        yield holder, port
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_live_pidfile_naming_a_foreign_holder_as_a_worker_is_not_believed(
    runner: Runner, foreign_holder: tuple[subprocess.Popen[bytes], int]
) -> None:
    holder, port = foreign_holder
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=EXIT_DEADLINE)
    info = ports.process_info(holder.pid)
    assert info is not None
    pids = runner.tmp_path / "pids"
    pids.mkdir()
    with (pids / f"mainspring-127.0.0.1-{port}.pid").open("w") as pidfile:
        # Locked, as a live instance's is, by a master that is gone, naming the holder's pid
        # as a worker's, but with another start time: the pid was reused.
        fcntl.flock(pidfile, fcntl.LOCK_EX)
        lineage = {"pid": gone.pid, "start_time": 1, "workers": [[holder.pid, info.start_time + 1]]}
        json.dump(
            {"app": APP, "host": "127.0.0.1", "port": port, "started": 0.0, **lineage}, pidfile
        )
        pidfile.flush()

        process = start(runner, "sleep-loop", port, "--takeover")

        assert runner.wait_exit(process) == EXIT_PORT_UNAVAILABLE
    assert f"pid {holder.pid}" in runner.output(process)
    assert holder.poll() is None
    assert accepts(port)


def test_one_ctrl_c_after_serving_exits_0(runner: Runner) -> None:
    """uvicorn re-raises the SIGINT it caught once it is done; that echo is no second
    Ctrl-C, and the stop cut nothing short."""
    port = free_port()
    process = start(runner, "sleep-loop", port)
    runner.wait_serving(process, port)

    process.send_signal(signal.SIGINT)

    assert runner.wait_exit(process) == EXIT_OK, runner.output(process)
