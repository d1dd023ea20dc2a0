"""Claim the port: bind it, or safely replace a previous instance of the same app.

A process is only ever signalled when everything agrees that it belongs to this app's
previous instance: a pidfile for this port whose flock is held, naming this app, and
naming the process (pid and start time) as its master or one of its workers, or the
process is a child of that master; the instance holds the listening socket, and the
process runs as the same user. Workers whose master was killed with SIGKILL (orphans under
init) are recognised this way and replaced like any previous instance.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mainspring.server import pidfile, ports
from mainspring.server.exitcodes import EXIT_ALREADY_RUNNING, EXIT_PORT_UNAVAILABLE, StartError

log = structlog.get_logger("mainspring.server")

BIND_RETRIES = 10
BIND_RETRY_DELAY = 0.2
POLL_INTERVAL = 0.05
KILL_WAIT = 5.0


@dataclass(frozen=True)
class Instance:
    """A running mainspring instance of our app: its master, unless it died, and its
    processes that hold the port (the master's children, or workers it left orphaned)."""

    master: ports.ProcessInfo | None
    workers: list[ports.ProcessInfo]

    @property
    def leaders(self) -> list[ports.ProcessInfo]:
        """Whom to ask to stop: the master, who stops its own workers, and any orphan."""
        if self.master is None:
            return self.workers
        return [self.master, *(w for w in self.workers if w.ppid != self.master.pid)]

    def describe(self) -> str:
        if self.master is not None:
            return f"pid {self.master.pid}"
        pids = ", ".join(str(worker.pid) for worker in self.workers)
        return f"orphaned workers, pids {pids}, of a master that died"


def find_instance(app: str, port: int, holders: list[ports.ProcessInfo]) -> Instance | None:
    """Our app's previous instance among `holders`, or None when the holder is anything else."""
    for path in sorted(pidfile.pidfile_dir().glob(f"mainspring-*-{port}.pid")):
        info = pidfile.read_live(path)
        if info is None or info.app != app or info.port != port:
            continue
        master = ports.process_info(info.pid)
        if master is not None and (
            master.state == "Z" or not (info.owns(master) and _runs_as_us(master.pid))
        ):
            master = None  # Dead, or its pid reused by a process that is not ours.
        workers = [
            holder
            for holder in holders
            if (master is not None and holder.ppid == master.pid)
            or (holder.pid != info.pid and info.owns(holder) and _runs_as_us(holder.pid))
        ]
        master_serves = master is not None and any(h.pid == master.pid for h in holders)
        if workers or master_serves:
            return Instance(master=master, workers=workers)
    return None


def _runs_as_us(pid: int) -> bool:
    """Never signal another user's process, whatever a pidfile says."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except OSError:
        return False


def claim_port(
    host: str, port: int, app: str, *, takeover: bool, stop_timeout: float
) -> socket.socket:
    """A listening socket on host:port, taking it over from our previous instance if asked."""
    try:
        return ports.bind(host, port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise StartError(ports.cannot_listen(host, port, exc), EXIT_PORT_UNAVAILABLE) from None
    _, (host_ip, _) = ports.resolve(host, port)
    holders = ports.port_holders(host_ip, port)
    if not holders:
        raise StartError(
            f"{host}:{port} is in use, and the process holding it cannot be identified "
            "(no permission to read its /proc entries?)",
            EXIT_PORT_UNAVAILABLE,
        )
    instance = find_instance(app, port, holders)
    if instance is None:
        held_by = "; ".join(f"pid {h.pid} ({h.cmdline or '?'})" for h in holders)
        raise StartError(
            f"{host}:{port} is in use by another program: {held_by}", EXIT_PORT_UNAVAILABLE
        )
    if not takeover:
        raise StartError(
            f"{app} is already running on {host}:{port} ({instance.describe()}); "
            "pass --takeover to replace it",
            EXIT_ALREADY_RUNNING,
        )
    stop_instance(instance, stop_timeout)
    return _bind_again(host, port)


def stop_instance(instance: Instance, timeout: float) -> None:
    """SIGTERM the instance and wait for it to exit; SIGKILL it and its workers after `timeout`."""
    leaders, described = instance.leaders, instance.describe()
    log.info("takeover stopping previous instance", instance=described, timeout=timeout)
    for process in leaders:
        _signal(process, signal.SIGTERM)
    if _wait(lambda: not any(_alive(process) for process in leaders), timeout):
        log.info("takeover previous instance exited", instance=described)
        return
    log.warning("takeover killing previous instance", instance=described, timeout=timeout)
    for process in [*instance.workers, *leaders]:
        _signal(process, signal.SIGKILL)
    _wait(lambda: not any(_alive(process) for process in leaders), KILL_WAIT)


def _alive(process: ports.ProcessInfo) -> bool:
    """True while this very process runs (a zombie has exited; a reused pid is another one)."""
    current = ports.process_info(process.pid)
    return current is not None and current.start_time == process.start_time and current.state != "Z"


def _signal(process: ports.ProcessInfo, sig: signal.Signals) -> None:
    if _alive(process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def _bind_again(host: str, port: int) -> socket.socket:
    """The old instance has exited, but its sockets may take a moment to be released."""
    attempts = 0
    while True:
        try:
            return ports.bind(host, port)
        except OSError as exc:
            attempts += 1
            if exc.errno != errno.EADDRINUSE or attempts >= BIND_RETRIES:
                raise StartError(
                    f"cannot listen on {host}:{port} after stopping the previous instance: "
                    f"{exc.strerror}",
                    EXIT_PORT_UNAVAILABLE,
                ) from None
        time.sleep(BIND_RETRY_DELAY)
