"""A local ESPN-compatible server: for tests, the replay demo and benchmarks.

`FakeEspn` serves `/apis/site/v2/sports/{sport}/{league}/scoreboard?dates=YYYYMMDD` from a
source (`ReplayFeed` or `RecordedFeed`) and injects faults on demand, set in the
constructor, on `fake.faults`, or over HTTP with `POST /_fake/faults` (JSON fields of
`Faults`). `GET /_fake/stats` counts requests and the peak of concurrent ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mainspring.server.address import base_url
from mainspring.server.ports import bind
from markets.espn.model import LEAGUES
from markets.espn.replay import ReplayFeed

log = structlog.get_logger("markets.espn")


class ScoreboardSource(Protocol):
    def scoreboard(self, league: str, day: date) -> dict[str, Any]:
        """ESPN's scoreboard payload for `league` on `day` (`{"events": []}` when none)."""


@dataclass
class Faults:
    """What the next scoreboard requests suffer; each counter is used up one request at a time."""

    latency: float = 0.0
    """Seconds added to every scoreboard request."""
    errors: int = 0
    """The next N requests answer 500."""
    timeouts: int = 0
    """The next N requests hang for `hang` seconds (longer than the client's timeout)."""
    hang: float = 5.0
    rate_limits: int = 0
    """The next N requests answer 429 with `Retry-After: <retry_after>`."""
    retry_after: str = "1"
    invalid_json: int = 0
    broken_events: int = 0
    """The next N payloads have their first event's competitors removed."""


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    max_concurrent: int = 0


class FakeEspn:
    def __init__(self, source: ScoreboardSource, *, faults: Faults | None = None) -> None:
        self.source = source
        self.faults = faults or Faults()
        self.stats = Stats()
        self.app = Starlette(
            routes=[
                Route("/apis/site/v2/sports/{sport}/{league}/scoreboard", self._scoreboard),
                Route("/_fake/faults", self._set_faults, methods=["GET", "POST"]),
                Route("/_fake/stats", self._stats),
            ]
        )

    def _take(self, counter: str) -> bool:
        left: int = getattr(self.faults, counter)
        if left <= 0:
            return False
        setattr(self.faults, counter, left - 1)
        return True

    async def _scoreboard(self, request: Request) -> Response:
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.max_concurrent = max(self.stats.max_concurrent, self.stats.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.stats.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        if self.faults.latency > 0:
            await asyncio.sleep(self.faults.latency)
        if self._take("timeouts"):
            await _hang(request, self.faults.hang)
        if self._take("errors"):
            return JSONResponse({"error": "injected failure"}, status_code=500)
        if self._take("rate_limits"):
            headers = {"Retry-After": self.faults.retry_after}
            return JSONResponse({"error": "rate limited"}, status_code=429, headers=headers)
        if self._take("invalid_json"):
            return Response('{"events": [', media_type="application/json")
        path = f"{request.path_params['sport']}/{request.path_params['league']}"
        league = next((code for code, sport in LEAGUES.items() if sport == path), None)
        if league is None:
            return JSONResponse({"code": 404, "message": f"unknown league {path}"}, status_code=404)
        raw_day = request.query_params.get("dates")
        try:
            day = datetime.strptime(raw_day, "%Y%m%d").date() if raw_day else _utc_today()
        except ValueError:
            return JSONResponse({"code": 400, "message": f"bad dates {raw_day!r}"}, status_code=400)
        payload = self.source.scoreboard(league, day)
        if payload.get("events") and self._take("broken_events"):
            payload = copy.deepcopy(payload)
            del payload["events"][0]["competitions"][0]["competitors"]
        return JSONResponse(payload)

    async def _set_faults(self, request: Request) -> Response:
        if request.method == "POST":
            changes = await request.json()
            names = {f.name for f in dataclasses.fields(Faults)}
            unknown = set(changes) - names
            if unknown:
                return JSONResponse({"error": f"unknown faults {sorted(unknown)}"}, status_code=422)
            self.faults = dataclasses.replace(self.faults, **changes)
        return JSONResponse(dataclasses.asdict(self.faults))

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(dataclasses.asdict(self.stats))


def _utc_today() -> date:
    return datetime.now(UTC).date()


async def _hang(request: Request, seconds: float) -> None:
    """Stall like a stuck upstream, but stop once the client has given up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass


def _server(fake: FakeEspn) -> uvicorn.Server:
    """No access lines and no logging setup of its own: its few lines go through whatever
    the process configured, in the process's format."""
    config = uvicorn.Config(
        fake.app,
        log_config=None,
        log_level=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


@contextmanager
def serve_fake(
    target: FakeEspn | ScoreboardSource, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Run the fake in a thread of this process, so it lives exactly as long as the process
    (or the block); yields its base URL. Port 0 picks a free port; a taken one raises OSError."""
    fake = target if isinstance(target, FakeEspn) else FakeEspn(target)
    sock = bind(host, port)  # A port another program holds raises here, before any request.
    server = _server(fake)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fake-espn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake ESPN server did not start")
            time.sleep(0.01)
        yield base_url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()


def run_replay_feed(
    host: str = "127.0.0.1", port: int = 8765, speed: float = 60.0, fixtures_dir: Path | None = None
) -> None:
    """`markets replay-feed`: serve the replay feed until interrupted. OSError when the port
    cannot be bound."""
    feed = ReplayFeed(fixtures_dir, speed=speed)
    with bind(host, port) as sock:
        url = base_url(host, sock.getsockname()[1])
        first = min(g.start for g in feed.games)
        log.info(
            "replay feed serving", url=url, speed=speed, games=len(feed.games), first=str(first)
        )
        _server(FakeEspn(feed)).run(sockets=[sock])
