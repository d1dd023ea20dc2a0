"""Markets import: 365 days from a fake ESPN with 50 ms per request, parallel against sequential.

Each run is the real admin import path (`create_import` then `run_import`) into a fresh
SQLite database migrated by `markets.db.session.upgrade`, against `FakeEspn` serving
`RecordedFeed(fill=True)` (games on every day) with 50 ms latency per scoreboard. The
fake runs in a child process (through `serve_fake`), so its CPU time and memory are not
counted as the import's; a fresh one per run keeps its request stats per run.

Wall times come from runs without tracemalloc (it slows every allocation); the import's
peak memory comes from one more run at the parallel concurrency, under tracemalloc, and
from the growth of the process's ru_maxrss high-water mark over the timed parallel run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import structlog

from mainspring.resources import Database, HttpClient
from markets.db.models import ImportState
from markets.db.session import upgrade
from markets.espn.client import EspnClient
from markets.espn.fake import FakeEspn, Faults, serve_fake
from markets.espn.fixtures import RecordedFeed
from markets.importer import create_import, run_import

LEAGUE = "nba"
START = date(2024, 1, 1)
WARMUP_DAYS = 8
"""A short import first, so lazy imports and first-use caches are not timed."""
FAKE_START_TIMEOUT = 30.0
FAKE_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Run:
    label: str
    concurrency: int
    seconds: float
    state: ImportState
    dates_done: int
    games_seen: int
    markets_opened: int
    errors: int
    requests: int
    max_concurrent: int
    maxrss_growth_kib: int


class Fake:
    """`FakeEspn` behind `serve_fake` in a child process; stopped by closing its stdin."""

    def __init__(self, latency: float) -> None:
        command = [sys.executable, __file__, "--serve-fake", "--latency", str(latency)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError("the fake ESPN server did not start")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_fake/stats", timeout=5) as response:
            stats: dict[str, int] = json.load(response)
            return stats

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(FAKE_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve(latency: float) -> None:
    """The child: print the fake's URL, serve until stdin closes."""
    fake = FakeEspn(RecordedFeed(fill=True), faults=Faults(latency=latency))
    with serve_fake(fake) as url:
        print(url, flush=True)
        sys.stdin.read()


def maxrss_kib() -> int:
    """The process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def import_days(url: str, database_url: str, days: int, concurrency: int) -> Run:
    db, http = Database(database_url), HttpClient(timeout=10)
    await db.open()
    await http.open()
    try:
        espn = EspnClient(http.client, url)
        end = START + timedelta(days=days - 1)
        run_id = await create_import(db, LEAGUE, START, end, requested_by="benchmark")
        rss_before = maxrss_kib()
        began = time.perf_counter()
        run = await run_import(db, espn, run_id, concurrency=concurrency)
        seconds = time.perf_counter() - began
        growth = maxrss_kib() - rss_before
    finally:
        await http.close()
        await db.close()
    return Run(
        label="",
        concurrency=concurrency,
        seconds=seconds,
        state=run.state,
        dates_done=run.dates_done,
        games_seen=run.games_seen,
        markets_opened=run.markets_opened,
        errors=len(run.errors),
        requests=0,
        max_concurrent=0,
        maxrss_growth_kib=growth,
    )


async def fetch_days(url: str, days: int, concurrency: int) -> float:
    """Seconds to fetch and parse `days` days with nothing stored: the import's fetching alone."""
    http = HttpClient(timeout=10)
    await http.open()
    try:
        espn = EspnClient(http.client, url)
        dates = [START + timedelta(days=n) for n in range(days)]
        began = time.perf_counter()
        await espn.games_for_dates(LEAGUE, dates, concurrency=concurrency)
        return time.perf_counter() - began
    finally:
        await http.close()


def measure_fetch(days: int, concurrency: int, latency: float) -> tuple[float, dict[str, int]]:
    fake = Fake(latency)
    try:
        seconds = asyncio.run(fetch_days(fake.url, days, concurrency))
        return seconds, fake.stats()
    finally:
        fake.stop()


def measure(label: str, days: int, concurrency: int, latency: float, tmp: Path) -> Run:
    """One import of `days` days into a fresh database, against a fresh fake."""
    database_url = f"sqlite:///{tmp / f'{label}.db'}"
    upgrade(database_url)
    fake = Fake(latency)
    try:
        run = asyncio.run(import_days(fake.url, database_url, days, concurrency))
        stats = fake.stats()
    finally:
        fake.stop()
    return dataclasses.replace(
        run, label=label, requests=stats["requests"], max_concurrent=stats["max_concurrent"]
    )


def peak_traced(days: int, concurrency: int, latency: float, tmp: Path) -> tuple[int, float]:
    """tracemalloc's peak over one import (bytes), and that run's (slowed) wall time."""
    database_url = f"sqlite:///{tmp / 'traced.db'}"
    upgrade(database_url)
    fake = Fake(latency)
    try:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            run = asyncio.run(import_days(fake.url, database_url, days, concurrency))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        fake.stop()
    return peak, run.seconds


def report(
    runs: list[Run],
    fetch: tuple[float, dict[str, int]],
    days: int,
    concurrency: int,
    latency: float,
    traced: tuple[int, float],
) -> None:
    parallel, sequential = runs
    ideal = days / concurrency * latency
    fetch_seconds, fetch_stats = fetch
    print(
        f"{'fetching':<22} {'wall s':>7} {'days':>5} {'games':>6} {'opened':>7} {'errors':>6} "
        f"{'requests':>8} {'peak in flight':>14} {'state':>7}"
    )
    for run in runs:
        print(
            f"{run.label:<22} {run.seconds:>7.2f} {run.dates_done:>5} {run.games_seen:>6} "
            f"{run.markets_opened:>7} {run.errors:>6} {run.requests:>8} "
            f"{run.max_concurrent:>14} {run.state.value:>7}"
        )
    print(
        f"{'fetch only (c=' + str(concurrency) + ')':<22} {fetch_seconds:>7.2f} "
        f"{'':>5} {'':>6} {'':>7} {'':>6} {fetch_stats['requests']:>8} "
        f"{fetch_stats['max_concurrent']:>14}"
    )
    print(f"{'ideal (days/c x lat)':<22} {ideal:>7.2f}")
    peak, traced_seconds = traced
    print(
        f"peak memory of the import (concurrency {concurrency}): tracemalloc peak "
        f"{peak / 2**20:.1f} MiB (traced run {traced_seconds:.2f} s), ru_maxrss growth "
        f"{parallel.maxrss_growth_kib / 1024:.1f} MiB"
    )
    print(
        f"fetching alone (no database) at concurrency {concurrency}: {fetch_seconds:.2f} s, "
        f"{fetch_seconds / ideal:.2f}x the ideal; storing {parallel.games_seen} games takes the "
        f"rest: {(parallel.seconds - fetch_seconds) / max(parallel.games_seen, 1) * 1000:.1f} "
        f"ms per game beyond the fetching"
    )
    print(
        f"markets import: {days} days at {latency * 1000:g} ms/request, concurrency "
        f"{concurrency} {parallel.seconds:.2f} s vs sequential {sequential.seconds:.2f} s: "
        f"{sequential.seconds / parallel.seconds:.1f}x faster; "
        f"{parallel.seconds / ideal:.2f}x the ideal {ideal:.2f} s"
    )


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_logs()
    if args.serve_fake:
        serve(args.latency)
        return
    print(
        f"markets import: {args.days} days of {LEAGUE} from the fake feed, "
        f"{args.latency * 1000:g} ms per request"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rest = (args.latency, Path(tmp))
        measure("warm-up", WARMUP_DAYS, args.concurrency, *rest)
        runs = [
            measure(f"parallel (c={args.concurrency})", args.days, args.concurrency, *rest),
            measure("sequential (c=1)", args.days, 1, *rest),
        ]
        fetch = measure_fetch(args.days, args.concurrency, args.latency)
        traced = peak_traced(args.days, args.concurrency, *rest)
    report(runs, fetch, args.days, args.concurrency, args.latency, traced)


if __name__ == "__main__":
    main()
