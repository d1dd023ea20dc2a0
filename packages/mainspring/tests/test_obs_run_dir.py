"""Run directories (the metrics directory of `mainspring run --workers N`): removed by their
creator only, and swept when, and only when, no process of their run is alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_support import EXIT_DEADLINE, wait_for

from mainspring.observability.run_dir import RunDir, remove_stale_run_dirs

HOLDER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from mainspring.observability.run_dir import RunDir

    run_dir = RunDir.create(Path(sys.argv[1]))
    if sys.argv[2] == "with-worker" and os.fork() == 0:
        sys.stdin.read()  # a forked worker, alive until the test closes its stdin
        os._exit(0)
    print(run_dir.path, flush=True)
    sys.stdin.read()
    """
)


class Holders:
    """Processes that each create a run directory and hold it until they are stopped."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.started: list[subprocess.Popen[str]] = []

    def start(self, mode: str = "alone") -> tuple[subprocess.Popen[str], Path]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(self.base), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.started.append(process)
        assert process.stdout is not None
        return process, Path(process.stdout.readline().strip())

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=EXIT_DEADLINE)
            assert process.stdin is not None
            process.stdin.close()  # a forked worker reads the same pipe and exits now


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[Holders]:
    holders = Holders(tmp_path / "runs")
    try:
        yield holders
    finally:
        holders.stop_all()


def test_the_sweep_removes_only_runs_with_no_process_alive(holders: Holders) -> None:
    _, live = holders.start()
    killed_process, killed = holders.start()
    orphaned_process, orphaned = holders.start("with-worker")
    os.kill(killed_process.pid, signal.SIGKILL)
    os.kill(orphaned_process.pid, signal.SIGKILL)  # its forked worker lives on
    killed_process.wait(timeout=EXIT_DEADLINE)
    orphaned_process.wait(timeout=EXIT_DEADLINE)

    remove_stale_run_dirs(holders.base)

    assert live.is_dir()
    assert orphaned.is_dir(), "a live worker of a killed run lost its directory"
    assert not killed.exists()

    assert orphaned_process.stdin is not None
    orphaned_process.stdin.close()  # the last process of that run exits

    def swept() -> bool:
        remove_stale_run_dirs(holders.base)
        return not orphaned.exists()

    wait_for(swept, EXIT_DEADLINE, "the orphaned run's directory to be swept once it ended")
    assert live.is_dir()


def test_only_the_creating_process_removes_the_directory(tmp_path: Path) -> None:
    run_dir = RunDir.create(tmp_path)
    pid = os.fork()
    if pid == 0:  # a forked worker leaving the same block
        run_dir.remove()
        os._exit(0)
    os.waitpid(pid, 0)
    assert run_dir.path.is_dir()

    remove_stale_run_dirs(tmp_path)  # the creator still holds it
    assert run_dir.path.is_dir()

    run_dir.remove()
    assert not run_dir.path.exists()
