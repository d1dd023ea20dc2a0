"""Loop overhead: ticks per second of an empty tick, `@loop(every=0)` against bare loops.

For a 0 s wait mainspring's loop still yields to the event loop once per tick
(`SystemClock.sleep_until` does `await asyncio.sleep(0)`), so the fair baseline
is a bare loop that does the same. The bare loop that never yields is shown too,
labelled: it is the raw cost of calling a coroutine, and it starves every other
task on the event loop while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable

import structlog

from mainspring import MainspringSettings, Runtime, Service, loop

WARMUP = 0.2
NEVER_YIELD_BATCH = 1000
"""The never-yielding loop checks the time once per this many ticks."""

MAINSPRING = "mainspring @loop(every=0)"
BARE_YIELD = "bare loop + sleep(0)"
BARE_NO_YIELD = "bare loop, never yields"


class Empty(Service):
    @loop(every=0)
    async def tick(self) -> None:
        """The empty tick all three loops run; the bare loops call it on their own instance."""


async def mainspring_rate(duration: float) -> float:
    async with Runtime(settings=MainspringSettings()) as rt:
        status = rt.supervise(Empty())
        await asyncio.sleep(WARMUP)
        return await rate(lambda: status.loops["tick"].ticks, duration)


async def bare_yield_rate(duration: float) -> float:
    count = 0
    tick = Empty().tick

    async def run() -> None:
        nonlocal count
        while True:
            await tick()
            count += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(run())
    try:
        await asyncio.sleep(WARMUP)
        return await rate(lambda: count, duration)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def bare_no_yield_rate(duration: float) -> float:
    count = 0
    tick = Empty().tick
    began = time.perf_counter()
    end = began + duration
    while True:
        for _ in range(NEVER_YIELD_BATCH):
            await tick()
        count += NEVER_YIELD_BATCH
        now = time.perf_counter()
        if now >= end:
            return count / (now - began)


async def rate(ticks: Callable[[], int], duration: float) -> float:
    """Ticks per second over `duration`, counted while the loop under test runs."""
    first, began = ticks(), time.perf_counter()
    await asyncio.sleep(duration)
    return (ticks() - first) / (time.perf_counter() - began)


VARIANTS: dict[str, Callable[[float], Awaitable[float]]] = {
    MAINSPRING: mainspring_rate,
    BARE_YIELD: bare_yield_rate,
    BARE_NO_YIELD: bare_no_yield_rate,
}


async def measure(rounds: int, duration: float) -> dict[str, list[float]]:
    """Interleave the variants round by round, so machine noise hits each alike."""
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, variant in VARIANTS.items():
            rates[name].append(await variant(duration))
    return rates


def report(rates: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{'loop':<28} {'median ticks/s':>15} {'min':>12} {'max':>12} {'us/tick':>8}")
    for name, values in rates.items():
        print(
            f"{name:<28} {medians[name]:>15,.0f} {min(values):>12,.0f} {max(values):>12,.0f} "
            f"{1e6 / medians[name]:>8.2f}"
        )
    ours = medians[MAINSPRING]
    overhead_us = 1e6 / ours - 1e6 / medians[BARE_YIELD]
    print(
        f"mainspring adds {overhead_us:.2f} us per tick over the bare yielding loop; "
        f"vs never-yielding: {ours / medians[BARE_NO_YIELD]:.2f}x"
    )
    print(
        f"loop overhead: mainspring {ours:,.0f} ticks/s, bare loop + sleep(0) "
        f"{medians[BARE_YIELD]:,.0f} ticks/s: {ours / medians[BARE_YIELD]:.2f}x"
    )


def profile(duration: float, top: int) -> None:
    """Where a mainspring tick spends its time, by own time per function."""
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(mainspring_rate(duration))
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def quiet_logs() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--profile", action="store_true", help="cProfile the mainspring loop")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    args = parser.parse_args(argv)
    quiet_logs()
    if args.profile:
        profile(args.duration, args.top)
        return
    print(f"loop overhead: empty tick, {args.rounds} interleaved rounds of {args.duration:g} s")
    report(asyncio.run(measure(args.rounds, args.duration)))


if __name__ == "__main__":
    main()
