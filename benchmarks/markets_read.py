"""Markets read path: `GET /markets?limit=50` under 200 concurrent clients on one worker.

A real `mainspring run markets.main:app` (one worker, `MAINSPRING_DRAIN_DELAY=0`) serves a
fresh SQLite database holding the demo's data: every recorded ESPN scoreboard
(`RecordedFeed`, the fixtures the demo and tests use) imported through the admin import
path (`create_import` + `run_import`) against the fake ESPN. After a short warm-up, 200
keep-alive clients (asyncio, one request in flight each, in a subprocess: unlike `wrk` it
counts every status code) keep the page busy for the measured run; the server is pinned
to one CPU and the load generator to the others when there are two or more.

Reported: req/s, p50/p99 latency, status-code counts, server CPU per request (/proc
utime + stime over the run) and the event-loop lag the runtime's watchdog measured during
the run (the `mainspring_event_loop_lag_seconds` histogram of /metrics: the highest bucket any
heartbeat fell in, and how many heartbeats waited over 50 ms).
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
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from http_stack import cpu_seconds, pick_cpus, pin
from markets_import import quiet_logs
from prometheus_client.parser import text_string_to_metric_families
from shutdown_latency import free_port, stop_server, wait_until_serving

from mainspring.resources import Database, HttpClient
from markets.db.session import upgrade
from markets.espn.client import EspnClient
from markets.espn.fake import serve_fake
from markets.espn.fixtures import RecordedFeed, load_boards
from markets.importer import create_import, run_import

PATH = "/markets?limit=50"
CONNECTIONS = 200
LAG_METRIC = "mainspring_event_loop_lag_seconds"
STALL = 0.05
"""A heartbeat waiting longer than this is a stall (the target: none)."""
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    errors: int
    """Connections that failed or were closed by the server."""


async def load_demo_data(database_url: str) -> int:
    """Import every recorded scoreboard's day; the number of markets opened."""
    db, http = Database(database_url), HttpClient(timeout=10)
    await db.open()
    await http.open()
    opened = 0
    try:
        with serve_fake(RecordedFeed()) as url:
            espn = EspnClient(http.client, url)
            for board in load_boards():
                run_id = await create_import(
                    db, board.league, board.day, board.day, requested_by="benchmark"
                )
                opened += (await run_import(db, espn, run_id)).markets_opened
    finally:
        await http.close()
        await db.close()
    return opened


def lag_buckets(base: str) -> dict[float, float]:
    """The watchdog's cumulative lag histogram: bucket upper bound -> heartbeats."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == LAG_METRIC
        for sample in family.samples
        if sample.name.endswith("_bucket")
    }


def lag_report(before: dict[float, float], after: dict[float, float]) -> tuple[float, int, int]:
    """(highest bucket bound any heartbeat of the run fell in, heartbeats, heartbeats > STALL)."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = int(max(delta.values(), default=0))
    within = int(max((n for bound, n in delta.items() if bound <= STALL), default=0))
    below = 0.0
    highest = 0.0
    for bound, cumulative in delta.items():
        if cumulative > below:
            highest = bound
        below = cumulative
    return highest, total, total - within


def run_python(url: str, duration: int, cpus: list[int] | None) -> Load:
    command = [sys.executable, __file__, "--generate", url, "--duration", str(duration)]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, preexec_fn=pin(cpus)
    ).stdout
    return Load(**json.loads(out))


async def generate(url: str, duration: int) -> Load:
    """Keep-alive clients, one request in flight each, with per-request latency and status."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii")
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    end = time.perf_counter() + duration

    async def client() -> None:
        nonlocal errors
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors += 1
            return
        try:
            while time.perf_counter() < end:
                sent = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(length[1]) if length else 0)
                latencies.append(time.perf_counter() - sent)
                statuses[head[9:12].decode()] += 1
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    latencies.sort()

    def at(share: float) -> float:
        return latencies[int(share * (len(latencies) - 1))] * 1000 if latencies else float("nan")

    return Load(
        len(latencies), time.perf_counter() - began, at(0.5), at(0.99), dict(statuses), errors
    )


def serve_and_load(warmup: int, duration: int) -> None:
    server_cpus, load_cpus = pick_cpus() or (None, None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'markets.db'}"
        upgrade(database_url)
        markets = asyncio.run(load_demo_data(database_url))
        log_path = Path(tmp) / "server.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MAINSPRING_DRAIN_DELAY": "0",
            "ESPN_BASE_URL": "http://127.0.0.1:9",
        }
        command = [sys.executable, "-m", "mainspring.cli", "run", "markets.main:app"]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=pin(server_cpus),
            )
        try:
            wait_until_serving(proc, f"{base}/health", log_path)
            with urllib.request.urlopen(f"{base}{PATH}", timeout=10) as response:
                size = len(response.read())
            run_python(f"{base}{PATH}", warmup, load_cpus)
            lag_before = lag_buckets(base)
            cpu_before = cpu_seconds(proc.pid)
            load = run_python(f"{base}{PATH}", duration, load_cpus)
            cpu = cpu_seconds(proc.pid) - cpu_before
            lag_after = lag_buckets(base)
        finally:
            stop_server(proc, STOP_TIMEOUT)
    print(
        f"markets read: GET {PATH} ({markets} markets, {size:,} byte page), "
        f"`mainspring run` 1 worker, SQLite; {CONNECTIONS} keep-alive Python clients, "
        f"{warmup} s warm-up + {duration} s"
    )
    highest, beats, stalls = lag_report(lag_before, lag_after)
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(load.statuses.items()))
    print(
        f"{load.requests / load.seconds:,.0f} req/s, p50 {load.p50_ms:,.1f} ms, "
        f"p99 {load.p99_ms:,.1f} ms, statuses {{{statuses}}}, socket errors {load.errors}, "
        f"server CPU {cpu * 1e6 / max(load.requests, 1):,.0f} us/req"
    )
    print(
        f"event-loop lag (watchdog heartbeats): {beats} in the run, max in bucket "
        f"<= {highest * 1000:g} ms, {stalls} over {STALL * 1000:g} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of measured load")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before it")
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        load = asyncio.run(generate(args.generate, args.duration))
        print(json.dumps(load.__dict__))
        return
    quiet_logs()
    serve_and_load(args.warmup, args.duration)


if __name__ == "__main__":
    main()
