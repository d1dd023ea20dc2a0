"""`EspnClient`: scoreboards over a shared `httpx.AsyncClient`, with retries that respect ESPN.

Timeouts, connection errors and 5xx are retried with exponential backoff and full jitter;
a 429 waits for its `Retry-After` (bounded). Other 4xx and payloads that are not
scoreboards fail at once: asking again would get the same answer.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from email.utils import parsedate_to_datetime
from json import JSONDecodeError

import httpx
import structlog

from mainspring.services.policy import Backoff
from markets.espn.errors import EspnPayloadError, EspnRequestError
from markets.espn.model import LEAGUES, ParsedGame
from markets.espn.parser import parse_scoreboard

log = structlog.get_logger("markets.espn")

DayResult = list[ParsedGame] | Exception
OnResult = Callable[[date, DayResult], Awaitable[None] | None]
Sleep = Callable[[float], Awaitable[object]]

DEFAULT_BACKOFF = Backoff(initial=0.5, cap=30.0)


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None, wait: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.wait = wait
        """The server's own wait (Retry-After), overriding the backoff."""


class EspnClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        retries: int = 3,
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Sleep = asyncio.sleep,
        max_retry_after: float = 120.0,
        timeout: float | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`retries` is how many times a failed request is repeated (so retries + 1 attempts).

        `sleep` waits between attempts (tests pass a recording fake); `timeout` overrides the
        http client's own per request; `wall` is only for Retry-After given as an HTTP date.
        """
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._timeout: httpx.Timeout | None = None if timeout is None else httpx.Timeout(timeout)
        self._rng = rng or random.Random()
        self._wall = wall

    def scoreboard_url(self, league: str) -> str:
        if league not in LEAGUES:
            raise ValueError(f"unknown league {league!r}; known: {', '.join(LEAGUES)}")
        return f"{self.base_url}/apis/site/v2/sports/{LEAGUES[league]}/scoreboard"

    async def scoreboard(self, league: str, day: date) -> list[ParsedGame]:
        """The games ESPN lists for `day` (a US date); malformed events are skipped."""
        url = self.scoreboard_url(league)
        params = {"dates": day.strftime("%Y%m%d")}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._get(url, params)
            except _Retryable as exc:
                if attempt > self.retries:
                    raise EspnRequestError(
                        f"ESPN {league} {day}: {exc} (gave up after {attempt} attempts)",
                        status=exc.status,
                        attempts=attempt,
                    ) from exc
                delay = exc.wait if exc.wait is not None else self.backoff.delay(attempt, self._rng)
                log.info(
                    "espn retry",
                    league=league,
                    day=str(day),
                    reason=str(exc),
                    attempt=attempt,
                    wait=delay,
                )
                await self._sleep(delay)
                continue
            if response.status_code >= 400:
                raise EspnRequestError(
                    f"ESPN {league} {day}: HTTP {response.status_code}",
                    status=response.status_code,
                    attempts=attempt,
                )
            try:
                payload = response.json()
            except (JSONDecodeError, UnicodeDecodeError) as exc:
                raise EspnPayloadError(f"ESPN {league} {day}: invalid JSON ({exc})") from exc
            return parse_scoreboard(payload, league)

    async def games_for_dates(
        self,
        league: str,
        days: Sequence[date],
        *,
        concurrency: int = 8,
        on_result: OnResult | None = None,
    ) -> dict[date, DayResult]:
        """Fetch `days` at most `concurrency` at a time; each day gets its games or its error.

        `on_result(day, result)` (sync or async) is called as each day finishes, for progress;
        an exception raised by it is a bug in the caller and propagates.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        unique = list(dict.fromkeys(days))
        results: dict[date, DayResult] = {}
        gate = asyncio.Semaphore(concurrency)

        async def fetch(day: date) -> None:
            async with gate:
                result: DayResult
                try:
                    result = await self.scoreboard(league, day)
                except Exception as exc:  # per-date errors are data, by contract
                    result = exc
            results[day] = result
            if on_result is not None:
                outcome = on_result(day, result)
                if inspect.isawaitable(outcome):
                    await outcome

        async with asyncio.TaskGroup() as group:
            for day in unique:
                group.create_task(fetch(day))
        return {day: results[day] for day in unique}

    async def _get(self, url: str, params: dict[str, str]) -> httpx.Response:
        try:
            if self._timeout is None:
                response = await self.http.get(url, params=params)
            else:
                response = await self.http.get(url, params=params, timeout=self._timeout)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout ({type(exc).__name__})", None) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error ({type(exc).__name__})", None) from exc
        if response.status_code == 429:
            wait = self._retry_after(response.headers.get("retry-after"))
            raise _Retryable("HTTP 429", 429, wait)
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", response.status_code)
        return response

    def _retry_after(self, value: str | None) -> float | None:
        """Retry-After in seconds or as an HTTP date, capped; None when absent or unreadable."""
        if value is None:
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - self._wall()
            except (TypeError, ValueError):
                return None
        return min(max(seconds, 0.0), self.max_retry_after)
