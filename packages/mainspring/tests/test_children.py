"""`die_with_parent`: a child process does not outlive its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
from process_support import EXIT_DEADLINE, STARTUP_DEADLINE, wait_for

from mainspring.children import die_with_parent

# A child that calls die_with_parent first thing, says so, and waits.
CHILD = """
import sys, time
from mainspring.children import die_with_parent
die_with_parent(int(sys.argv[1]))
print("armed", flush=True)
time.sleep(120)
"""
# A parent that starts CHILD, prints the child's pid once it is armed, and waits.
PARENT = f"""
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", {CHILD!r}, str(os.getpid())], stdout=subprocess.PIPE, text=True
)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(120)
"""


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_child_that_calls_die_with_parent_dies_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert running(child)

        parent.kill()
        parent.wait(timeout=EXIT_DEADLINE)

        wait_for(lambda: not running(child), STARTUP_DEADLINE, "the child to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=EXIT_DEADLINE)
        if child and running(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_whose_parent_is_gone_already_exits_at_once() -> None:
    pid = os.fork()
    if pid == 0:  # The child: its parent is this test process, not pid 1.
        die_with_parent(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGTERM
