"""Shutdown latency: SIGTERM to process exit, 50 pollers asleep in a 15-minute loop.

Both apps are served by plain uvicorn (one worker) in a subprocess, so the only
difference measured is the lifespan: mainspring's Runtime against the blog
pattern, whose sleeping tasks only notice `stop()` when their 900 s sleep ends.
That one is cut at `--bound` seconds and reported as ">= bound". An app with no
background work gives the floor: uvicorn's own shutdown (it checks for a signal
every 0.1 s) plus interpreter exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
STARTUP_TIMEOUT = 30.0
SETTLE = 1.0
"""Seconds to wait after the app answers, so that every loop has ticked and is asleep."""
CLEAN_EXITS = (0, -signal.SIGTERM)
"""uvicorn re-raises the signal it stopped on once shutdown is complete."""
POLL_INTERVAL = 900
"""The pollers' loop interval in both apps."""
STUCK_BOUND = 60.0
"""An app that should stop promptly but is still alive after this many seconds is an error."""


@dataclass(frozen=True)
class Exit:
    seconds: float
    cut: bool
    """True when the process was still alive at the bound and had to be killed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_serving(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the app did not answer {url} in {STARTUP_TIMEOUT}s:\n{tail(log_path)}")


def stop_server(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM a benchmark's server; SIGKILL it when it has not exited after `timeout` s."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def measure(module: str, bound: float) -> Exit:
    """Serve `module:app`, SIGTERM it once it is idle, and time how long it takes to exit."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port)],
                cwd=APPS,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_serving(proc, f"http://127.0.0.1:{port}/ping", log_path)
            time.sleep(SETTLE)
            result = signal_and_time(proc, bound)
            if not result.cut and proc.returncode not in CLEAN_EXITS:
                raise RuntimeError(
                    f"{module} exited with {proc.returncode}, not a clean stop:\n{tail(log_path)}"
                )
            return result
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def signal_and_time(proc: subprocess.Popen[bytes], bound: float) -> Exit:
    """SIGTERM, then wait in a thread so the exit is seen the moment it happens."""
    exited_at: list[float] = []

    def reap() -> None:
        proc.wait()
        exited_at.append(time.perf_counter())

    waiter = threading.Thread(target=reap, daemon=True)
    waiter.start()
    sent = time.perf_counter()
    os.kill(proc.pid, signal.SIGTERM)
    waiter.join(bound)
    if exited_at:
        return Exit(exited_at[0] - sent, cut=False)
    proc.kill()
    waiter.join()
    return Exit(bound, cut=True)


def repeat(label: str, module: str, runs: int) -> list[float]:
    """Measure an app that is expected to exit on its own, `runs` times."""
    results = []
    for run in range(1, runs + 1):
        result = measure(module, bound=STUCK_BOUND)
        if result.cut:
            raise RuntimeError(f"{label} was still running {STUCK_BOUND:g}s after SIGTERM")
        results.append(result.seconds)
        print(f"{label:<22} {run:>4} {result.seconds:>9.3f}", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bound", type=float, default=20.0, help="cut the blog pattern here (s)")
    parser.add_argument("--runs", type=int, default=5, help="mainspring runs")
    parser.add_argument("--floor-runs", type=int, default=3, help="runs of the app with no work")
    args = parser.parse_args(argv)

    print("shutdown latency: 50 pollers on every=900 s, SIGTERM -> exit (uvicorn, 1 worker)")
    print(f"{'app':<22} {'run':>4} {'seconds':>9}")
    floor = repeat("no background work", "plain_app", args.floor_runs)
    mainspring = repeat("mainspring", "mainspring_pollers", args.runs)
    blog = measure("blog_pollers", bound=args.bound)
    shown = f"{'>= ' if blog.cut else ''}{blog.seconds:.3f}"
    print(f"{'blog pattern':<22} {1:>4} {shown:>9}" + ("  (killed at bound)" if blog.cut else ""))

    median, worst = statistics.median(mainspring), max(mainspring)
    if floor:
        print(
            f"floor (no background work) median {statistics.median(floor):.2f} s: "
            f"mainspring's own share is about {median - statistics.median(floor):.2f} s"
        )
    ratio = blog.seconds / median
    blog_text = f">= {blog.seconds:.1f} s (cut at bound)" if blog.cut else f"{blog.seconds:.2f} s"
    if blog.cut:
        print(
            f"the blog pattern's tasks wake only when their {POLL_INTERVAL} s sleeps end: "
            f"about {POLL_INTERVAL / median:,.0f}x by construction; the ratio below is "
            f"capped by --bound"
        )
    print(
        f"shutdown latency: mainspring median {median:.2f} s (max {worst:.2f} s), "
        f"blog pattern {blog_text}: {'>= ' if blog.cut else ''}{ratio:.0f}x"
    )


if __name__ == "__main__":
    main()
