"""The locked pidfile, and how it decides whether a port holder is our previous instance."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mainspring.server import ports
from mainspring.server.exitcodes import EXIT_ALREADY_RUNNING, StartError
from mainspring.server.pidfile import Pidfile, pidfile_path, read_live
from mainspring.server.takeover import find_instance

APP = "tests.sample_apps.slow:app"
PORT = 18000


@pytest.fixture(autouse=True)
def pidfile_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAINSPRING_PIDFILE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def held() -> object:
    pidfile = Pidfile(pidfile_path("127.0.0.1", PORT))
    pidfile.acquire(app=APP, host="127.0.0.1", port=PORT, timeout=1)
    yield pidfile
    pidfile.release()


def this_process() -> ports.ProcessInfo:
    info = ports.process_info(os.getpid())
    assert info is not None
    return info


@pytest.mark.usefixtures("held")
def test_a_held_pidfile_is_live_and_names_the_app(pidfile_dir: Path) -> None:
    info = read_live(pidfile_dir / f"mainspring-127.0.0.1-{PORT}.pid")
    assert info is not None
    assert (info.pid, info.app, info.host, info.port) == (os.getpid(), APP, "127.0.0.1", PORT)


@pytest.mark.usefixtures("held")
def test_a_second_owner_waits_then_gives_up() -> None:
    with pytest.raises(StartError) as caught:
        Pidfile(pidfile_path("127.0.0.1", PORT)).acquire(
            app=APP, host="127.0.0.1", port=PORT, timeout=0.2
        )
    assert caught.value.exit_code == EXIT_ALREADY_RUNNING


def test_release_removes_the_file_and_a_stale_file_is_not_live(pidfile_dir: Path) -> None:
    path = pidfile_path("127.0.0.1", PORT)
    pidfile = Pidfile(path)
    pidfile.acquire(app=APP, host="127.0.0.1", port=PORT, timeout=1)
    pidfile.release()
    assert not path.exists()

    path.write_text(
        json.dumps(
            {"pid": os.getpid(), "app": APP, "host": "127.0.0.1", "port": PORT, "started": 0.0}
        )
    )
    assert read_live(path) is None


def test_a_forked_child_does_not_release_its_parents_pidfile(held: Pidfile) -> None:
    child = os.fork()
    if child == 0:
        held.release()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_live(held.path) is not None


@pytest.mark.usefixtures("held")
def test_find_instance_needs_the_app_the_port_and_a_holder() -> None:
    me = this_process()
    instance = find_instance(APP, PORT, [me])
    assert instance is not None
    assert instance.master.pid == me.pid

    assert find_instance("other:app", PORT, [me]) is None
    stranger = dataclasses.replace(me, pid=me.pid + 1, ppid=me.ppid)
    assert find_instance(APP, PORT, [stranger]) is None


@pytest.mark.usefixtures("held")
def test_find_instance_accepts_the_parent_of_a_holder_as_a_gunicorn_master() -> None:
    me = this_process()
    worker = dataclasses.replace(me, pid=me.pid + 1, ppid=me.pid)
    instance = find_instance(APP, PORT, [worker])
    assert instance is not None
    assert instance.master.pid == me.pid
    assert instance.workers == [worker]


def test_find_instance_ignores_an_unlocked_pidfile() -> None:
    me = this_process()
    pidfile_path("127.0.0.1", PORT).write_text(
        json.dumps({"pid": me.pid, "app": APP, "host": "127.0.0.1", "port": PORT, "started": 0.0})
    )
    assert find_instance(APP, PORT, [me]) is None


@pytest.fixture
def other_process() -> Iterator[ports.ProcessInfo]:
    """A real process of ours (so pid, start time and owner are real), not our child as far
    as find_instance is told: an orphaned worker."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = ports.process_info(process.pid)
        assert info is not None
        yield dataclasses.replace(info, ppid=1)
    finally:
        process.kill()
        process.wait(timeout=10)


def test_recorded_workers_are_rewritten_in_place_and_read_back(held: Pidfile) -> None:
    held.record_workers([(101, 7), (102, 8)])
    held.record_workers([(103, 9)])
    info = read_live(held.path)
    assert info is not None
    assert info.workers == ((103, 9),)
    assert info.start_time == this_process().start_time


def test_find_instance_knows_an_orphaned_worker_by_its_recorded_pid_and_start_time(
    held: Pidfile, other_process: ports.ProcessInfo
) -> None:
    held.record_workers([(other_process.pid, other_process.start_time)])
    instance = find_instance(APP, PORT, [other_process])
    assert instance is not None
    assert instance.workers == [other_process]
    assert other_process in instance.leaders  # its master cannot stop it: takeover does


def test_find_instance_refuses_a_recorded_pid_with_another_start_time(
    held: Pidfile, other_process: ports.ProcessInfo
) -> None:
    held.record_workers([(other_process.pid, other_process.start_time + 1)])
    assert find_instance(APP, PORT, [other_process]) is None
