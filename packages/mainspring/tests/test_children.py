"""`die_with_parent`: a child process does not outlive its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from process_support import EXIT_DEADLINE, STARTUP_DEADLINE, running, wait_for

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
    # Its parent is this test process, not pid 1: as if pid 1 had been its parent and died.
    gone = "from mainspring.children import die_with_parent; die_with_parent(1); print('alive')"
    child = subprocess.run(
        [sys.executable, "-c", gone], capture_output=True, text=True, timeout=EXIT_DEADLINE
    )
    assert child.returncode == 128 + signal.SIGTERM
    assert child.stdout == ""
