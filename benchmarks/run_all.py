"""Run every benchmark in turn: `uv run python benchmarks/run_all.py` (about 20 minutes)."""

from __future__ import annotations

import cold_start
import http_stack
import loop_overhead
import markets_import
import markets_read
import realtime_fanout
import realtime_memory
import realtime_tail
import shutdown_latency
import supervisor_scale


def main() -> None:
    shutdown_latency.main([])
    print()
    loop_overhead.main([])
    print()
    http_stack.main([])
    print()
    markets_import.main([])
    print()
    markets_read.main([])
    print()
    realtime_fanout.main([])
    print()
    realtime_memory.main([])
    print()
    realtime_tail.main([])
    print()
    cold_start.main([])
    print()
    supervisor_scale.main([])


if __name__ == "__main__":
    main()
