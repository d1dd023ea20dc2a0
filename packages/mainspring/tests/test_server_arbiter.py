"""gunicorn's master: its record of how workers ended while stopping (a worker that exited
on its own before the stop deadline's SIGKILL keeps its code; one the SIGKILL ended counts
as killed), and how long it lets a worker stay silent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil
import pytest
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

from mainspring.server.arbiter import MainspringArbiter
from mainspring.server.exitcodes import EXIT_OK, EXIT_STOP_KILLED
from mainspring.server.multi import MainspringApplication
from mainspring.server.options import RunOptions


class _App(BaseApplication):  # type: ignore[misc]
    def load_config(self) -> None:
        pass

    def load(self) -> None:
        return None


@dataclass
class _Tmp:
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@dataclass
class _Worker:
    """What the arbiter touches of a worker it reaps."""

    tmp: _Tmp = field(default_factory=_Tmp)
    age: int = 0


@pytest.fixture
def arbiter() -> MainspringArbiter:
    arbiter = MainspringArbiter(_App(), None)
    arbiter.WORKERS = {}  # gunicorn's is a class attribute, shared by every arbiter
    arbiter.stopping = True
    return arbiter


def adopt(arbiter: MainspringArbiter, code: str) -> subprocess.Popen[bytes]:
    """A child of this process, registered as the arbiter's worker."""
    child = subprocess.Popen([sys.executable, "-c", code])
    arbiter.WORKERS[child.pid] = _Worker()
    return child


def exited_unreaped(child: subprocess.Popen[bytes]) -> None:
    """Wait until `child` is a zombie, without reaping it."""
    process = psutil.Process(child.pid)
    for _ in range(1000):
        if process.status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.01)
    raise AssertionError(f"child {child.pid} did not exit")


def test_a_worker_that_exited_before_the_final_kill_keeps_its_code(
    arbiter: MainspringArbiter,
) -> None:
    child = adopt(arbiter, "pass")
    exited_unreaped(child)
    arbiter.kill_worker(child.pid, signal.SIGKILL)
    assert arbiter.stop_outcome == EXIT_OK
    assert child.pid not in arbiter.WORKERS


def test_a_worker_the_final_kill_ends_counts_as_killed(arbiter: MainspringArbiter) -> None:
    child = adopt(arbiter, "import time; time.sleep(60)")
    try:
        arbiter.kill_worker(child.pid, signal.SIGKILL)
    finally:
        child.kill()
    assert arbiter.stop_outcome == EXIT_STOP_KILLED
    assert child.pid not in arbiter.WORKERS


def test_every_status_is_noted_where_it_is_reaped(arbiter: MainspringArbiter) -> None:
    children = [adopt(arbiter, "raise SystemExit(6)"), adopt(arbiter, "pass")]
    for child in children:
        exited_unreaped(child)
    arbiter.reap_workers()
    assert arbiter.WORKERS == {}
    assert arbiter.stop_outcome == 6


@pytest.mark.parametrize(("stop_timeout", "silent_for"), [(10, 120), (300, 300)])
def test_a_worker_silent_through_a_long_start_up_is_not_killed(
    stop_timeout: int, silent_for: int
) -> None:
    """Workers send no heartbeat while their lifespan starts (the migration lock, the
    migration): gunicorn's default 30 s would kill and respawn them in a loop."""
    application = MainspringApplication(
        RunOptions("tests.sample_apps.singleton_app:app", workers=2),
        0,
        stop_deadline=stop_timeout,
        stop_timeout=stop_timeout,
    )
    assert application.cfg.timeout == silent_for
