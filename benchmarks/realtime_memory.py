"""Real-time memory: server RSS per idle connection, WebSocket and SSE.

Each app is served by plain uvicorn (one worker) on 127.0.0.1. The clients (lean asyncio
protocols, in this process) first open and close a few connections, so that what the
first connection loads once is in the baseline; then the server's RSS is read
(/proc/PID/statm), `--connections` connections are opened and subscribed (WebSocket: the
``subscribed`` reply, or the anchors' acknowledgement, has arrived; SSE: the response
headers have), and after `--settle` seconds the RSS is read again: (RSS with N - RSS
baseline) / N. WebSockets with per-message deflate off, then on (a browser offers it;
its zlib contexts are per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import uvloop
from realtime_support import (
    load_note,
    open_streams,
    open_websockets,
    raise_nofile,
    rss_bytes,
    serve,
)

CHANNEL = "bench"
SUBSCRIBE = '{"type":"subscribe","channel":"bench"}'
WARMUP = 50
QUOTED_SSE_STARLETTE_KB = 47
QUOTED_STREAMING_KB = 29
"""Measured earlier, as quoted in the issue (sse-starlette is not a dependency here)."""


class Closable(Protocol):
    def close(self) -> None: ...


Opener = Callable[[int, int], Awaitable[Sequence[Closable]]]
"""(port, count) -> connections that are open and subscribed."""


@dataclass(frozen=True)
class Case:
    label: str
    module: str
    flags: list[str]
    open: Opener


def websockets(deflate: bool) -> Opener:
    async def opener(port: int, count: int) -> Sequence[Closable]:
        return await open_websockets(port, "/ws", count, deflate=deflate, subscribe=SUBSCRIBE)

    return opener


async def streams(port: int, count: int) -> Sequence[Closable]:
    return await open_streams(port, f"/events/{CHANNEL}", count)


def deflate_flag(on: bool) -> list[str]:
    return ["--ws-per-message-deflate", "true" if on else "false"]


CASES = [
    Case("WebSocket  mainspring", "realtime_mainspring", deflate_flag(False), websockets(False)),
    Case("WebSocket  naive (anchor)", "realtime_naive", deflate_flag(False), websockets(False)),
    Case("WS+deflate mainspring", "realtime_mainspring", deflate_flag(True), websockets(True)),
    Case("WS+deflate naive (anchor)", "realtime_naive", deflate_flag(True), websockets(True)),
    Case("SSE        mainspring", "realtime_mainspring", [], streams),
    Case("SSE        StreamingResponse", "realtime_streaming", [], streams),
]


@dataclass(frozen=True)
class Result:
    case: Case
    connections: int
    baseline: int
    loaded: int

    @property
    def per_connection(self) -> float:
        return (self.loaded - self.baseline) / self.connections


def measure(case: Case, connections: int, settle: float) -> Result:
    with serve(f"{case.module}:app", flags=case.flags) as server:

        async def run() -> Result:
            for warm in await case.open(server.port, WARMUP):
                warm.close()
            await asyncio.sleep(settle)
            baseline = rss_bytes(server.pid)
            opened = await case.open(server.port, connections)
            await asyncio.sleep(settle)
            loaded = rss_bytes(server.pid)
            for connection in opened:
                connection.close()
            return Result(case, connections, baseline, loaded)

        return uvloop.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before reading RSS")
    args = parser.parse_args(argv)
    limit = raise_nofile()
    print(
        f"realtime memory: server RSS per idle connection at {args.connections} connections, "
        f"uvicorn 1 worker (websockets-sansio, uvloop), RLIMIT_NOFILE {limit}"
    )
    print(load_note())
    print(f"{'connection':<30} {'baseline MB':>11} {'loaded MB':>10} {'KB/connection':>14}")
    began = time.perf_counter()
    results = {}
    for case in CASES:
        r = measure(case, args.connections, args.settle)
        results[case.label] = r
        print(
            f"{case.label:<30} {r.baseline / 2**20:>11.1f} {r.loaded / 2**20:>10.1f} "
            f"{r.per_connection / 1024:>14.1f}",
            flush=True,
        )
    print(
        f"{'SSE        sse-starlette':<30} {'':>11} {'':>10} {QUOTED_SSE_STARLETTE_KB:>14.1f}"
        "  (quoted from the issue, not measured: not installed)"
    )
    print(f"({time.perf_counter() - began:.0f} s in all; {load_note()})")

    def kb(label: str) -> float:
        return results[label].per_connection / 1024

    ws, sse = kb("WebSocket  mainspring"), kb("SSE        mainspring")
    print(
        f"per WebSocket: mainspring {ws:.1f} KB (target < 32), naive "
        f"{kb('WebSocket  naive (anchor)'):.1f} KB; with deflate mainspring "
        f"{kb('WS+deflate mainspring'):.1f} KB, naive {kb('WS+deflate naive (anchor)'):.1f} KB"
    )
    streaming = kb("SSE        StreamingResponse")
    print(
        f"per SSE stream: mainspring {sse:.1f} KB (target < 16), bare StreamingResponse "
        f"{streaming:.1f} KB (issue: ~{QUOTED_STREAMING_KB}), sse-starlette ~"
        f"{QUOTED_SSE_STARLETTE_KB} KB (issue): mainspring / StreamingResponse "
        f"{sse / streaming:.2f}x"
    )


if __name__ == "__main__":
    main()
