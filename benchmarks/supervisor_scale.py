"""Supervisor scale: many idle `@loop` services in one process, owned by one Runtime.

In-process, on uvloop: the time of each `supervise` call, the resident memory the
services add once all of them run their first tick and sleep, the process's CPU while
they all sleep, and the time `Runtime` takes to stop them. Log lines are rendered as
JSON (their cost counts) into /dev/null.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import uvloop
from fastapi import FastAPI

from mainspring import Runtime, Service, loop
from mainspring.observability.logging import configure_logging

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class FirstTicks:
    """Counts the services' first ticks; `all_done` is set when every one has ticked."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.all_done = asyncio.Event()

    def one(self) -> None:
        self.expected -= 1
        if self.expected == 0:
            self.all_done.set()


class Idle(Service):
    def __init__(self, first_ticks: FirstTicks) -> None:
        self.first_ticks: FirstTicks | None = first_ticks

    @loop(every=900)
    async def tick(self) -> None:
        """Stands in for a poll that runs once at start, then every 15 minutes."""
        if self.first_ticks is not None:
            self.first_ticks.one()
            self.first_ticks = None


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_SIZE


async def measure(services: int, idle: float) -> dict[str, float]:
    rt = Runtime(FastAPI())
    first_ticks = FirstTicks(services)
    await rt.__aenter__()
    try:
        rss_before = rss_bytes()
        began = time.perf_counter()
        for i in range(services):
            rt.supervise(Idle(first_ticks), name=f"idle-{i}")
        supervise_s = time.perf_counter() - began
        await first_ticks.all_done.wait()
        started_s = time.perf_counter() - began
        rss_added = rss_bytes() - rss_before
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await asyncio.sleep(idle)
        idle_cpu = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
    finally:
        stop_began = time.perf_counter()
        await rt.__aexit__(None, None, None)
        stop_s = time.perf_counter() - stop_began
    return {
        "supervise_us": supervise_s * 1e6 / services,
        "started_s": started_s,
        "rss_kb": rss_added / 1024 / services,
        "idle_cpu": idle_cpu,
        "stop_s": stop_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured")
    args = parser.parse_args(argv)
    with open(os.devnull, "w") as devnull:
        configure_logging(json=True, stream=devnull)
        result = uvloop.run(measure(args.services, args.idle))
    print(f"supervisor scale: {args.services:,} idle @loop(every=900) services, one process")
    print(f"  supervise():        {result['supervise_us']:8.1f} us per service  (target < 50)")
    print(f"  all first ticks:    {result['started_s']:8.2f} s after the first supervise")
    print(f"  resident memory:    {result['rss_kb']:8.1f} KB per service  (target < 8)")
    print(f"  idle CPU:           {result['idle_cpu']:8.1%} of one core over {args.idle:g} s")
    print(f"  stop:               {result['stop_s']:8.2f} s  (target < 1)")


if __name__ == "__main__":
    main()
