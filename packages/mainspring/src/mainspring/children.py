"""Child processes that die with their parent, so a killed server leaves nothing running.

On Linux the kernel sends a chosen signal to a process when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere only the check at the child's start applies. The
"parent" is the *thread* that started the child: start children from the main thread,
or from a thread that lives as long as the process, or the child is signalled when that
thread ends. The child calls it itself, first thing: there is deliberately no
``preexec_fn``, which Python documents as unsafe in a process with threads (every
mainspring process has some).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    """libc's prctl, looked up once in the parent: a forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Have this process receive `sig` when its parent, pid `parent`, dies.

    Call it first thing in the child (a forked worker, a Python program). When the
    parent is gone already, the child exits at once with status 128 + `sig`, as if the
    signal had killed it.
    """
    if _prctl is not None:
        unsigned = ctypes.c_ulong
        if _prctl(PR_SET_PDEATHSIG, unsigned(sig), unsigned(0), unsigned(0), unsigned(0)):
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    if os.getppid() != parent:
        os._exit(128 + sig)
