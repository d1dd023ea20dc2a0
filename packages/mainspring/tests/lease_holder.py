"""A second process for the two-process lease tests: take a lease and keep renewing it.

Usage: python lease_holder.py URL NAMESPACE NAME [--ttl SECONDS] [--lifetime SECONDS]

Prints ``acquired TOKEN`` once it holds the lease (or ``busy`` and exits 1), then
renews until it is killed, the lease is lost (prints ``lost``, exits 2) or
`lifetime` runs out, so that it always stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from mainspring.leases import (
    LeaseBackend,
    RedisLeaseBackend,
    holder_id,
    lease_backend_from_url,
)


def backend_for(url: str, namespace: str, ttl: float) -> LeaseBackend:
    if url.startswith(("redis://", "rediss://")):
        return RedisLeaseBackend(url, namespace, ttl=ttl)
    return lease_backend_from_url(url, namespace)


async def hold(url: str, namespace: str, name: str, ttl: float, lifetime: float) -> int:
    backend = backend_for(url, namespace, ttl)
    try:
        lease = await backend.try_acquire(name, holder_id("lease-holder", namespace))
        if lease is None:
            print("busy", flush=True)
            return 1
        print(f"acquired {lease.token}", flush=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + lifetime
        while loop.time() < deadline:
            await asyncio.sleep(lease.renew_interval)
            if not await lease.renew():
                print("lost", flush=True)
                return 2
        await lease.release()
        return 0
    finally:
        await backend.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("namespace")
    parser.add_argument("name")
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    return asyncio.run(hold(args.url, args.namespace, args.name, args.ttl, args.lifetime))


if __name__ == "__main__":
    sys.exit(main())
