"""Real-time fan-out: one server, thousands of WebSocket clients, a burst of messages.

Each app in `apps/` (realtime_mainspring, and the anchors realtime_naive and
realtime_sequential) is served by plain uvicorn (one worker) on 127.0.0.1. The clients
run in another process (lean asyncio protocols, see realtime_support.py), connect and
subscribe, then ask for a burst of `--messages` messages of about `--size` bytes
published back to back, and count until each has them all (or `--bound` seconds pass).
Per-message deflate off, then on (uvicorn `--ws-per-message-deflate`; the client
offers the extension or not). With two CPUs the server and the clients are pinned to
different ones. Measured per run: deliveries per second (from the burst request to the
last client's last message), server CPU per delivery (/proc/PID/stat utime + stime,
before and after), and the worst event-loop lag during the burst (a probe task in the
server sleeps 5 ms in a loop and keeps its worst overshoot; read over HTTP after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass

import uvloop
from realtime_support import (
    cpu_seconds,
    http,
    load_note,
    open_websockets,
    pick_cpus,
    raise_nofile,
    run_driver,
    serve,
)

APPS = {
    "mainspring": "realtime_mainspring",
    "naive gather": "realtime_naive",
    "sequential": "realtime_sequential",
}


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


SUBSCRIBE = '{"type":"subscribe","channel":"bench"}'
CONNECT_BOUND = 180.0


@dataclass(frozen=True)
class Result:
    app: str
    clients: int
    deflate: bool
    deliveries: int
    expected: int
    seconds: float
    cpu: float
    lag_ms: float
    wire_bytes: float
    """Bytes received per delivery, frame headers included: shows what deflate saved."""
    client_cpu: float
    """The client process's CPU seconds in the burst: near `seconds`, the clients were the limit."""
    cut: bool
    """True when the bound passed before every client had every message."""

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu / max(self.deliveries, 1)


async def drive(
    port: int, pid: int, clients: int, messages: int, size: int, deflate: bool, bound: float
) -> dict[str, object]:
    """The client side: connect, subscribe, trigger the burst, count, report as JSON."""
    raise_nofile()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(CONNECT_BOUND):
        sockets = await open_websockets(port, "/ws", clients, deflate=deflate, subscribe=SUBSCRIBE)
    before = sum(s.wire_bytes for s in sockets)
    reached = [s.expect(1 + messages) for s in sockets]
    await http(port, "GET", "/lag?reset=true")
    cpu_before, own_before = cpu_seconds(pid), own_cpu()
    started = loop.time()
    await http(port, "POST", f"/burst?count={messages}&size={size}")
    done, _ = await asyncio.wait(reached, timeout=bound)
    finished = [f.result() for f in done if f.exception() is None]
    cut = len(finished) < clients
    ended = loop.time() if cut else max(finished)
    cpu, own = cpu_seconds(pid) - cpu_before, own_cpu() - own_before
    lag = await http(port, "GET", "/lag")
    deliveries = sum(min(s.messages - 1, messages) for s in sockets)
    last_ok = all(
        json.loads(s.last)["data"]["n"] == messages - 1
        for s in sockets
        if s.reached.done() and not s.reached.exception()
    )
    for s in sockets:
        s.close()
    return {
        "deliveries": deliveries,
        "expected": clients * messages,
        "seconds": ended - started,
        "cpu": cpu,
        "lag_ms": lag["worst_ms"],
        "wire_bytes": (sum(s.wire_bytes for s in sockets) - before) / max(deliveries, 1),
        "cut": cut,
        "client_cpu": own,
        "last_ok": last_ok,
        "deflated": all(s.inflate is not None for s in sockets),
    }


def measure(
    app: str, clients: int, deflate: bool, messages: int, size: int, bound: float
) -> Result:
    cpus = pick_cpus()
    server_cpus, client_cpus = cpus or (None, None)
    flags = ["--ws-per-message-deflate", "true" if deflate else "false"]
    with serve(f"{APPS[app]}:app", flags=flags, cpus=server_cpus) as server:
        args = [
            "--drive",
            str(server.port),
            "--pid",
            str(server.pid),
            "--clients",
            str(clients),
            "--messages",
            str(messages),
            "--size",
            str(size),
            "--bound",
            str(bound),
        ] + (["--deflate"] if deflate else [])
        out = run_driver("realtime_fanout.py", args, client_cpus, CONNECT_BOUND + bound + 60)
    if not out["last_ok"]:
        raise RuntimeError(f"{app}: a client's last message was not the last one published")
    if out["deflated"] != deflate:
        raise RuntimeError(f"{app}: per-message deflate was {'not ' if deflate else ''}agreed")
    return Result(
        app,
        clients,
        deflate,
        out["deliveries"],
        out["expected"],
        out["seconds"],
        out["cpu"],
        out["lag_ms"],
        out["wire_bytes"],
        out["client_cpu"],
        out["cut"],
    )


def report(results: list[Result]) -> None:
    print(
        f"{'clients':>7} {'deflate':>7} {'app':<13} {'deliveries/s':>13} {'seconds':>8} "
        f"{'CPU us/dlv':>10} {'worst lag ms':>12} {'wire B/dlv':>10} {'client busy':>11}"
    )
    for r in results:
        cut = f"  (cut at bound: {r.deliveries:,} of {r.expected:,})" if r.cut else ""
        print(
            f"{r.clients:>7} {'on' if r.deflate else 'off':>7} {r.app:<13} {r.rate:>13,.0f} "
            f"{r.seconds:>8.2f} {r.cpu_us:>10.1f} {r.lag_ms:>12.1f} {r.wire_bytes:>10.0f} "
            f"{r.client_cpu / r.seconds:>11.0%}{cut}"
        )
    by = {(r.app, r.clients, r.deflate): r for r in results}
    for clients, deflate in dict.fromkeys((r.clients, r.deflate) for r in results):
        if {app for app, *_ in by} != set(APPS):
            break
        ours = by[("mainspring", clients, deflate)]
        naive = by[("naive gather", clients, deflate)]
        sequential = by[("sequential", clients, deflate)]
        print(
            f"{clients} clients, deflate {'on' if deflate else 'off'}: "
            f"mainspring / naive deliveries/s {ours.rate / naive.rate:.2f}x (target >= 2); "
            f"CPU per delivery mainspring / sequential {ours.cpu_us / sequential.cpu_us:.2f}x "
            f"(target <= 1); worst lag mainspring {ours.lag_ms:.1f} ms, naive "
            f"{naive.lag_ms:.1f} ms, sequential {sequential.lag_ms:.1f} ms"
            + (" (target < 20 ms)" if clients >= 5000 else "")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=200, help="approximate payload bytes")
    parser.add_argument("--bound", type=float, default=60.0, help="seconds per burst, at most")
    parser.add_argument("--apps", nargs="+", choices=list(APPS), default=list(APPS))
    parser.add_argument("--deflate-modes", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--deflate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        out = uvloop.run(
            drive(
                args.drive,
                args.pid,
                args.clients[0],
                args.messages,
                args.size,
                args.deflate,
                args.bound,
            )
        )
        print(json.dumps(out))
        return

    limit = raise_nofile()
    cpus = pick_cpus()
    print(
        f"realtime fan-out: {args.messages} messages of ~{args.size} B published back to back, "
        f"uvicorn 1 worker (websockets-sansio, uvloop), bound {args.bound:g} s per burst, "
        f"RLIMIT_NOFILE {limit}"
    )
    if cpus:
        print(f"pinned: server on CPU {cpus[0][0]}, clients on CPU {','.join(map(str, cpus[1]))}")
    else:
        print("not pinned: one CPU, so the server and the clients share it")
    print(load_note())
    results = []
    began = time.perf_counter()
    for clients in args.clients:
        for deflate in (mode == "on" for mode in args.deflate_modes):
            for app in args.apps:
                r = measure(app, clients, deflate, args.messages, args.size, args.bound)
                results.append(r)
                print(
                    f"  {clients:>5} clients, deflate {'on ' if deflate else 'off'} {app:<13} "
                    f"{r.rate:>10,.0f} deliveries/s{'  (cut at bound)' if r.cut else ''}",
                    flush=True,
                )
    print(f"({time.perf_counter() - began:.0f} s in all; {load_note()})")
    report(results)


if __name__ == "__main__":
    main()
