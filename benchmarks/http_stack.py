"""HTTP throughput: a small JSON endpoint, bare FastAPI against the observability stacks.

Each app in `apps/` is served by plain uvicorn (one worker, httptools, uvloop, no
uvicorn access log) in a subprocess on 127.0.0.1, and loaded by `wrk` from another
process: a short warm-up, then the measured run. Variants are interleaved round by
round so machine noise hits each alike; medians are reported. With two or more CPUs
the server and the load generator are pinned to different ones (as `taskset` would).
Without `wrk` on PATH (`apt-get install -y wrk`) a small keep-alive load generator
in Python runs in a subprocess instead, and the output says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shutdown_latency import free_port, wait_until_serving

APPS = Path(__file__).resolve().parent / "apps"
PATH = "/item"
UVICORN_FLAGS = ["--no-access-log", "--log-level", "warning", "--http", "httptools"]
UVICORN_FLAGS += ["--loop", "uvloop"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

BARE = "bare FastAPI"
MAINSPRING = "mainspring stack"
NO_WATCHDOG = "mainspring, no watchdog"
BLOG = "blog stack"


@dataclass(frozen=True)
class Variant:
    module: str
    env: dict[str, str]


VARIANTS = {
    BARE: Variant("http_bare", {}),
    MAINSPRING: Variant("http_mainspring", {"BENCH_WATCHDOG": "1"}),
    NO_WATCHDOG: Variant("http_mainspring", {"BENCH_WATCHDOG": "0"}),
    BLOG: Variant("http_blog", {}),
}


@dataclass(frozen=True)
class Run:
    rps: float
    requests: int
    """Requests answered in the measured run."""
    errors: int
    """Socket errors and non-2xx answers."""
    log_lines: int
    """Lines in the app's request log after warm-up and run (0 for bare FastAPI)."""
    sent: int
    """Requests sent in warm-up and run together, to compare with `log_lines`."""
    cpu_us: float
    """Server CPU (user + system, all its threads) per request in the measured run."""


@dataclass(frozen=True)
class Load:
    """Runs a load generator against a URL; returns (requests, seconds, errors)."""

    name: str
    run: Callable[[str, int, list[int] | None], tuple[int, float, int]]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid` so far (/proc/PID/stat utime + stime), all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pin(cpus: list[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def run_wrk(url: str, duration: int, cpus: list[int] | None) -> tuple[int, float, int]:
    command = ["wrk", "-t", "1" if cpus else "2", "-c", str(CONNECTIONS), "-d", f"{duration}s"]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, preexec_fn=pin(cpus)
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(done[2]) / (1000 if done[3] == "ms" else 1)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(done[1]), seconds, errors + (int(non_2xx[1]) if non_2xx else 0)


def run_python(url: str, duration: int, cpus: list[int] | None) -> tuple[int, float, int]:
    command = [sys.executable, __file__, "--generate", url, "--duration", str(duration)]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, preexec_fn=pin(cpus)
    ).stdout
    result = json.loads(out)
    return result["requests"], result["seconds"], result["errors"]


WRK = Load("wrk", run_wrk)
PYTHON_LOAD = Load("python keep-alive clients (wrk not on PATH)", run_python)
CONNECTIONS = 50


async def generate(url: str, duration: int, connections: int) -> dict[str, float]:
    """The fallback load generator: `connections` keep-alive clients, one request in flight each."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")
    counts = {"requests": 0, "errors": 0}
    end = time.perf_counter() + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < end:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(length[1]) if length else 0)
                ok = head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3"))
                counts["requests" if ok else "errors"] += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {**counts, "seconds": time.perf_counter() - began}


def serve_and_load(
    variant: Variant, load: Load, warmup: int, duration: int, cpus: tuple[list[int], ...] | None
) -> Run:
    server_cpus, load_cpus = cpus or (None, None)
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    with tempfile.TemporaryDirectory() as tmp:
        request_log = Path(tmp) / "requests.log"
        server_log = Path(tmp) / "server.log"
        env = {**os.environ, **variant.env, "BENCH_LOG_PATH": str(request_log)}
        with server_log.open("wb") as out:
            command = [sys.executable, "-m", "uvicorn", f"{variant.module}:app"]
            proc = subprocess.Popen(
                [*command, "--port", str(port), *UVICORN_FLAGS],
                cwd=APPS,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=pin(server_cpus),
            )
        try:
            wait_until_serving(proc, url, server_log)
            warm, _, _ = load.run(url, warmup, load_cpus)
            cpu_before = cpu_seconds(proc.pid)
            requests, seconds, errors = load.run(url, duration, load_cpus)
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait()
        lines = sum(1 for _ in request_log.open("rb")) if request_log.exists() else 0
        # +1: wait_until_serving's own request.
        cpu_us = cpu * 1e6 / requests
        return Run(requests / seconds, requests, errors, lines, warm + requests + 1, cpu_us)


def measure(
    rounds: int, warmup: int, duration: int, load: Load, cpus: tuple[list[int], ...] | None
) -> dict[str, list[Run]]:
    """Interleave the variants round by round, so machine noise hits each alike."""
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    for round_ in range(1, rounds + 1):
        for name, variant in VARIANTS.items():
            run = serve_and_load(variant, load, warmup, duration, cpus)
            runs[name].append(run)
            print(
                f"  round {round_}  {name:<24} {run.rps:>9,.0f} req/s {run.cpu_us:>7.1f} CPU us/req"
                + (f"  ({run.errors} errors)" if run.errors else ""),
                flush=True,
            )
    return runs


def report(runs: dict[str, list[Run]]) -> None:
    medians = {name: statistics.median(r.rps for r in values) for name, values in runs.items()}
    cpu = {name: statistics.median(r.cpu_us for r in values) for name, values in runs.items()}
    bare = medians[BARE]
    print(
        f"{'stack':<24} {'median req/s':>13} {'min':>9} {'max':>9} {'x bare':>7} "
        f"{'CPU us/req':>11} {'x bare':>7} {'log lines/req':>14}"
    )
    for name, values in runs.items():
        rates = [r.rps for r in values]
        logged = sum(r.log_lines for r in values) / sum(r.sent for r in values)
        print(
            f"{name:<24} {medians[name]:>13,.0f} {min(rates):>9,.0f} {max(rates):>9,.0f} "
            f"{medians[name] / bare:>7.2f} {cpu[name]:>11.1f} {cpu[name] / cpu[BARE]:>7.2f} "
            f"{logged:>14.2f}"
        )
    ours = medians[MAINSPRING]
    print(
        f"server CPU per request: mainspring adds {cpu[MAINSPRING] - cpu[BARE]:.1f} us "
        f"({cpu[MAINSPRING] / cpu[BARE] - 1:+.0%}) over bare FastAPI, "
        f"the blog stack {cpu[BLOG] - cpu[BARE]:.1f} us ({cpu[BLOG] / cpu[BARE] - 1:+.0%})"
    )
    added = cpu[MAINSPRING] / cpu[BARE] - 1
    print(f"mainspring CPU/req over bare:    {added:+.0%}  (target <= +15%)")
    print(f"mainspring / bare FastAPI req/s: {ours / bare:.2f}x  (target >= 0.85)")
    print(f"mainspring / blog stack req/s:   {ours / medians[BLOG]:.2f}x  (target > 1)")
    print(f"watchdog on / off req/s:         {ours / medians[NO_WATCHDOG]:.2f}x  (target >= 0.98)")


def pick_cpus() -> tuple[list[int], ...] | None:
    """Server on one CPU, load generator on the others; None on a single CPU."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return [available[0]], available[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before it")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        result = asyncio.run(generate(args.generate, args.duration, CONNECTIONS))
        print(json.dumps(result))
        return

    load = WRK if shutil.which("wrk") else PYTHON_LOAD
    cpus = pick_cpus()
    stack = "instrument(app)" if _has_instrument() else "composed from its pieces"
    print(
        f"http stack: GET {PATH} (small JSON), uvicorn 1 worker ({' '.join(UVICORN_FLAGS)}), "
        f"{args.rounds} interleaved rounds of {args.warmup:g} s warm-up + {args.duration:g} s"
    )
    print(f"load: {load.name}, {CONNECTIONS} keep-alive connections")
    if cpus:
        server, generator = (",".join(map(str, group)) for group in cpus)
        print(f"pinned (as taskset): server on CPU {server}, load generator on CPU {generator}")
    else:
        print("not pinned: one CPU, so the server and the load generator share it")
    print(
        "mainspring stack: correlation id, JSON access log to a file, metrics, error handlers, "
        f"watchdog (0.1 s), {stack}; blog stack: asgi-correlation-id + BaseHTTPMiddleware "
        "structlog JSON line to a file"
    )
    report(measure(args.rounds, args.warmup, args.duration, load, cpus))


def _has_instrument() -> bool:
    import mainspring.observability

    return hasattr(mainspring.observability, "instrument")


if __name__ == "__main__":
    main()
