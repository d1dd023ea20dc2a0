"""Real-time tailing: many SSE followers of one JSON-lines file that is being appended to.

Each app is served by plain uvicorn (one worker) on 127.0.0.1 with TAIL_ROOT set to a
fresh directory: mainspring's `tail_jsonl` (one reader per file, shared by every follower)
and the anchor, a per-connection tail (each stream opens the file and polls it with a
blocking ``readline``). Both poll every `--poll` seconds. The followers run in another
process (lean SSE clients; pinned to the other CPU when there are two); once all
`--followers` streams are open, this process appends `--rate` lines per second for
`--duration` seconds, each line carrying its write time, then creates NAME.done so the
streams end. Measured: the server's read syscalls per second while lines are written
(/proc/PID/io syscr: file reads, and whatever else reads, e.g. the loop's wake-ups), its
CPU, and the line-to-client latency (receive time minus write time) at p50/p99/max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop
from realtime_fanout import own_cpu
from realtime_support import (
    cpu_seconds,
    load_note,
    open_streams,
    pick_cpus,
    pin,
    raise_nofile,
    read_syscalls,
    serve,
)

NAME = "bench.jsonl"
APPS = {"mainspring": "realtime_mainspring", "per-connection tail": "realtime_streaming"}
STAMP = re.compile(rb'"t":\s*([0-9.]+)')
PAD = "x" * 100
CONNECT_BOUND = 120.0
END_BOUND = 30.0
QUIET = 5.0
"""Once lines have come: how long the followers wait for more before they stop."""


@dataclass(frozen=True)
class Result:
    app: str
    reads_per_second: float
    cpu: float
    """Server CPU seconds while lines were written, per second."""
    p50_ms: float
    p99_ms: float
    max_ms: float
    received: int
    expected: int
    client_busy: float


async def follow(port: int, followers: int, lines: int) -> dict[str, object]:
    """The followers' side: open the streams, say "ready", collect latencies until done."""
    raise_nofile()
    latencies: list[float] = []

    def on_data(data: bytes) -> None:
        stamp = STAMP.search(data)
        if stamp is not None:
            latencies.append(time.time() - float(stamp[1]))

    async with asyncio.timeout(CONNECT_BOUND):
        streams = await open_streams(port, f"/tail/{NAME}", followers, on_data)
    print("ready", flush=True)
    started = own_cpu()
    loop = asyncio.get_running_loop()
    seen, quiet_since = 0, loop.time()
    # Done with every line, or once nothing more has come for QUIET seconds after some did.
    while len(latencies) < followers * lines:
        if len(latencies) != seen:
            seen, quiet_since = len(latencies), loop.time()
        elif seen and loop.time() - quiet_since > QUIET:
            break
        await asyncio.sleep(0.05)
    busy = own_cpu() - started
    for stream in streams:
        stream.close()
    return {"latencies": latencies, "client_cpu": busy}


def write_lines(path: Path, rate: float, duration: float) -> int:
    """Append `rate` lines per second, each stamped with its write time, on a fixed
    schedule (a late line does not push the later ones back)."""
    count = round(rate * duration)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    began = time.monotonic()
    try:
        for n in range(count):
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            line = f'{{"t":{time.time():.6f},"n":{n},"pad":"{PAD}"}}\n'
            os.write(fd, line.encode())
    finally:
        os.close(fd)
    return count


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def measure(app: str, followers: int, rate: float, duration: float, poll: float) -> Result:
    cpus = pick_cpus()
    server_cpus, client_cpus = cpus or (None, None)
    lines = round(rate * duration)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root, NAME)
        path.touch()
        env = {"TAIL_ROOT": root, "TAIL_POLL": str(poll)}
        with serve(f"{APPS[app]}:app", env=env, cpus=server_cpus) as server:
            command = [sys.executable, __file__, "--follow", str(server.port)]
            command += ["--followers", str(followers), "--lines", str(lines)]
            driver = subprocess.Popen(
                command, stdout=subprocess.PIPE, text=True, preexec_fn=pin(client_cpus)
            )
            try:
                assert driver.stdout is not None
                if driver.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"{app}: the followers did not connect")
                reads, cpu = read_syscalls(server.pid), cpu_seconds(server.pid)
                began = time.monotonic()
                write_lines(path, rate, duration)
                seconds = time.monotonic() - began
                reads = read_syscalls(server.pid) - reads
                cpu = cpu_seconds(server.pid) - cpu
                Path(root, f"{NAME}.done").touch()
                out, _ = driver.communicate(timeout=CONNECT_BOUND + END_BOUND + 30)
            finally:
                if driver.poll() is None:
                    driver.kill()
                    driver.wait()
    if driver.returncode != 0:
        raise RuntimeError(f"{app}: the followers failed ({driver.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    latencies = [1000 * x for x in result["latencies"]]
    return Result(
        app,
        reads / seconds,
        cpu / seconds,
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        max(latencies, default=0.0),
        len(latencies),
        followers * lines,
        result["client_cpu"] / seconds,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="lines per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of writing")
    parser.add_argument("--poll", type=float, default=0.1, help="poll interval of both tails")
    parser.add_argument("--follow", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--lines", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.follow:
        out = uvloop.run(follow(args.follow, args.followers, args.lines))
        print(json.dumps(out))
        return

    limit = raise_nofile()
    print(
        f"realtime tail: {args.followers} SSE followers of one file, {args.rate:g} lines/s for "
        f"{args.duration:g} s, both tails poll every {args.poll:g} s, uvicorn 1 worker, "
        f"RLIMIT_NOFILE {limit}"
    )
    print(load_note())
    results = []
    for app in APPS:
        results.append(measure(app, args.followers, args.rate, args.duration, args.poll))
        print(f"  {app:<20} done", flush=True)
    print(
        f"{'tail':<20} {'reads/s':>9} {'server CPU':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'lines received':>16} {'client busy':>11}"
    )
    for r in results:
        print(
            f"{r.app:<20} {r.reads_per_second:>9,.0f} {r.cpu:>10.0%} {r.p50_ms:>8.1f} "
            f"{r.p99_ms:>8.1f} {r.max_ms:>8.1f} {r.received:>7,}/{r.expected:<8,} "
            f"{r.client_busy:>11.0%}"
        )
    ours, anchor = results
    more = anchor.reads_per_second / max(ours.reads_per_second, 1e-9)
    print(
        f"read syscalls per second: mainspring {ours.reads_per_second:,.0f}, per-connection "
        f"tail {anchor.reads_per_second:,.0f} ({more:,.0f}x more); p99 line-to-client latency "
        f"mainspring {ours.p99_ms:.0f} ms (target < 250 ms), per-connection {anchor.p99_ms:.0f} ms"
    )
    print(load_note())


if __name__ == "__main__":
    main()
