"""The markets admin API with no admin token: open to a direct loopback request, closed to
one that a proxy passed on, whichever header the proxy used."""

from __future__ import annotations

from pathlib import Path

from markets_support import served
from test_admin_trust import PROXY_HEADER_SAMPLES


async def test_without_a_token_the_admin_api_refuses_every_proxied_request(
    tmp_path: Path,
) -> None:
    async with served(
        database_url=f"sqlite:///{tmp_path / 'markets.db'}", MAINSPRING_LEASE_URL=str(tmp_path)
    ) as client:
        direct = await client.get("/admin/imports/1")
        assert direct.status_code == 404  # trusted: the import does not exist
        for header, value in PROXY_HEADER_SAMPLES.items():
            proxied = await client.get("/admin/imports/1", headers={header: value})
            assert proxied.status_code == 403, header
            started = await client.post(
                "/admin/imports",
                json={"league": "nba", "start": "2026-01-01", "end": "2026-01-01"},
                headers={header: value},
            )
            assert started.status_code == 403, header
