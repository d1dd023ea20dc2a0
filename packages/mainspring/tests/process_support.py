"""Helpers for tests that run real server processes: free ports, bounded waits, cleanup."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from mainspring.server.exitcodes import EXIT_APP_ERROR

ROOT = Path(__file__).resolve().parents[1]
"""packages/mainspring: the directory from which `tests.sample_apps...` imports."""
STARTUP_DEADLINE = 60.0
EXIT_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def session_survivors(session: int) -> list[psutil.Process]:
    """The live processes still in session `session`, or in process group `session`."""
    survivors = []
    for process in psutil.process_iter():
        try:
            members = session in (os.getsid(process.pid), os.getpgid(process.pid))
        except ProcessLookupError:
            continue
        if members and running(process.pid):
            survivors.append(process)
    return survivors


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Runner:
    """Starts `mainspring run` subprocesses and stops, at the end, those still running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "MAINSPRING_PIDFILE_DIR": str(tmp_path / "pids"),
            # No load balancer to wait for: stop at once unless a test asks for a drain.
            "MAINSPRING_DRAIN_DELAY": "0",
        }
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        """`mainspring run ARGS...` from `cwd` (packages/mainspring, from which the sample
        apps import, unless told otherwise), its output kept in a log file."""
        command = [sys.executable, "-m", "mainspring.cli", "run", *args]
        return self.spawn(command, env=env, cwd=cwd)

    def spawn(
        self, command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"run-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        log = next(log for started, log in self.started if started is process)
        return log.read_text(errors="replace")

    def wait_serving(self, process: subprocess.Popen[bytes], port: int) -> int:
        """Wait until /ping answers; return the pid that answered."""
        answered: list[int] = []

        def serving() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"exited {process.returncode}:\n{self.output(process)}")
            try:
                answered.append(httpx.get(f"http://127.0.0.1:{port}/ping").json()["pid"])
            except httpx.HTTPError:
                return False
            return True

        wait_for(serving, STARTUP_DEADLINE, f"port {port} to serve")
        return answered[-1]

    def wait_exit(self, process: subprocess.Popen[bytes]) -> int:
        try:
            return process.wait(timeout=EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running:\n{self.output(process)}") from None

    def stop_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.started:
            try:
                process.wait(timeout=EXIT_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    runner = Runner(tmp_path)
    try:
        yield runner
    finally:
        runner.stop_all()


def config_failure(
    args: list[str], env: dict[str, str], cwd: Path = ROOT, secret: str | None = None
) -> str:
    """Run `mainspring run ARGS` expecting exit 2; its one plain (non-log) stderr line.
    `secret` must appear nowhere in stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "mainspring.cli", "run", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_DEADLINE,
    )
    assert result.returncode == EXIT_APP_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert secret is None or secret not in result.stderr
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, result.stderr  # once, however many workers failed alike
    (line,) = plain
    assert line.startswith("mainspring: ")
    return line
