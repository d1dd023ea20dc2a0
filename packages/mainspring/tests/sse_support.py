"""Reading Server-Sent Events in tests: an httpx response, parsed the way EventSource does."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from process_support import Runner, free_port

APP = "tests.sample_apps.realtime_app:app"

READ_TIMEOUT = 10.0
"""A bound on waiting for the next event, so a broken stream fails the test, not hangs it."""


@dataclass(frozen=True)
class Event:
    id: str | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Dispatches events like a browser: fields up to a blank line; comments kept aside."""

    def __init__(self, response: httpx.Response, wait: float = READ_TIMEOUT) -> None:
        self._lines: AsyncIterator[str] = response.aiter_lines()
        self.wait = wait
        """How long any one call may wait."""
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self) -> Event:
        """The next event; raises EOFError when the stream ends first."""
        async with asyncio.timeout(self.wait):
            event = await self._read_event()
        if event is None:
            raise EOFError("the stream ended")
        return event

    async def take(self, count: int) -> list[Event]:
        return [await self.next() for _ in range(count)]

    async def rest(self) -> list[Event]:
        """Every event until the server ends the stream."""
        events = []
        async with asyncio.timeout(self.wait):
            while (event := await self._read_event()) is not None:
                events.append(event)
        return events

    async def comment(self) -> str:
        """Wait for the next comment line (a keepalive, say), passing over events."""
        seen = len(self.comments)
        async with asyncio.timeout(self.wait):
            while len(self.comments) == seen:
                if await self._read_event(stop_at_comment=True) is None and (
                    len(self.comments) == seen
                ):
                    raise EOFError("the stream ended")
        return self.comments[seen]

    async def _read_event(self, stop_at_comment: bool = False) -> Event | None:
        fields: dict[str, list[str]] = {}
        async for line in self._lines:
            if not line:
                if "data" in fields:
                    return Event(
                        id=fields["id"][-1] if "id" in fields else None,
                        event=fields.get("event", ["message"])[-1],
                        data="\n".join(fields["data"]),
                    )
                fields.clear()
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                if stop_at_comment:
                    return None
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry":
                self.retry = int(value)
            else:
                fields.setdefault(name, []).append(value)
        return None


async def eventually(read: Callable[[], Awaitable[Any]], expected: Any, what: str = "") -> None:
    """Poll `read` until it returns `expected` (a server's gauges, say), for READ_TIMEOUT."""
    deadline = time.monotonic() + READ_TIMEOUT
    while (value := await read()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or expected}: still {value}")
        await asyncio.sleep(0.05)


@contextmanager
def realtime_server(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """The sample real-time app in a `mainspring run` process; its base URL."""
    runner = Runner(tmp_path)
    port = free_port()
    try:
        runner.wait_serving(runner.start(APP, "--port", str(port), env=env), port)
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.stop_all()


@asynccontextmanager
async def stream_client() -> AsyncIterator[httpx.AsyncClient]:
    """A client for many streams at once: no pool limit, no connection kept for reuse."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        yield client
