"""Helpers shared by the lease backend tests: a holder in another process, and polling."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mainspring.leases import Lease, LeaseBackend

HOLDER_SCRIPT = Path(__file__).with_name("lease_holder.py")


@asynccontextmanager
async def holder_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """Run lease_holder.py until it holds the lease; yield it and its fencing token."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HOLDER_SCRIPT), *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode().strip()
        assert line.startswith("acquired "), line
        yield proc, int(line.split()[1])
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def acquire_within(backend: LeaseBackend, name: str, holder: str) -> Lease:
    """Poll until the lease is ours; fails the test after a generous deadline."""
    async with asyncio.timeout(30):
        while True:
            lease = await backend.try_acquire(name, holder)
            if lease is not None:
                return lease
            await asyncio.sleep(0.05)
