"""Imports of a range of days: fetched in parallel, stored day by day, safe to repeat.

An import is an `ImportRun` row first (so its progress can be read while it runs),
then `run_import` fills it in. Every write goes through the same idempotent store
functions as the pollers, so re-running an overlapping range creates nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import select, update

from mainspring import Service
from mainspring.resources import Database
from markets.db.board import Announce, Changes, store_board
from markets.db.models import ImportRun, ImportState, League
from markets.db.store import ensure_leagues, league_id
from markets.espn.client import DayResult, EspnClient
from markets.espn.model import LEAGUES, ParsedGame

log = structlog.get_logger("markets.importer")

T = TypeVar("T")

MAX_IMPORT_DAYS = 366
QUEUE_SIZE = 16
"""Imports waiting to run in one process; beyond this the admin API answers 503."""

Progress = Callable[[ImportRun], None]


def check_league(league: str) -> None:
    if league not in LEAGUES:
        raise ValueError(f"unknown league {league!r}; known leagues: {', '.join(sorted(LEAGUES))}")


def check_range(start: date, end: date) -> None:
    if start > end:
        raise ValueError(f"start ({start}) is after end ({end})")
    days = (end - start).days + 1
    if days > MAX_IMPORT_DAYS:
        raise ValueError(
            f"the range covers {days} days; at most {MAX_IMPORT_DAYS} may be imported at once"
        )


async def create_import(
    db: Database, league: str, start: date, end: date, *, requested_by: str
) -> int:
    """Record a queued import of `league` from `start` to `end` (inclusive); its id."""
    check_league(league)
    check_range(start, end)
    async with db.session() as session:
        await ensure_leagues(session)
        run = ImportRun(
            league_id=await league_id(session, league),
            requested_by=requested_by,
            start_date=start,
            end_date=end,
            state=ImportState.QUEUED,
            dates_total=(end - start).days + 1,
            dates_done=0,
            games_seen=0,
            markets_opened=0,
            errors={},
        )
        session.add(run)
        await session.flush()
        return run.id


async def run_import(
    db: Database,
    espn: EspnClient,
    run_id: int,
    *,
    concurrency: int = 8,
    on_progress: Progress | None = None,
    announce: Announce | None = None,
) -> ImportRun:
    """Fetch and store every day of import `run_id`; the finished run.

    Days are fetched `concurrency` at a time and stored one at a time as they arrive,
    while the fetching goes on, each in its own transaction together with the run's
    counters, so the progress never runs ahead of what is stored; what a transaction
    changed is passed to `announce` once it is committed. A day that cannot be fetched
    is recorded in `errors`; the run fails only when every day failed or something else
    went wrong.
    """
    async with db.session() as session:
        run = await session.get(ImportRun, run_id)
        if run is None:
            raise LookupError(f"import {run_id} does not exist")
        league = await session.scalar(select(League.code).where(League.id == run.league_id))
        run.state = ImportState.RUNNING
    assert league is not None  # a foreign key
    days = [run.start_date + timedelta(days=n) for n in range(run.dates_total)]
    logger = log.bind(import_id=run_id, league=league)
    logger.info("import started", start=str(run.start_date), end=str(run.end_date))
    tally = _Tally(run)

    async def store(batch: Sequence[tuple[date, DayResult]]) -> None:
        games: list[ParsedGame] = []
        for day, result in batch:
            if isinstance(result, Exception):
                tally.errors[day.isoformat()] = _describe(result)
                logger.warning("import day failed", day=day.isoformat(), error=str(result))
            else:
                games.extend(result)
                tally.seen += len(result)
        changes = Changes()
        async with db.session() as session:
            if games:
                board = await store_board(session, games, run_id)
                tally.opened += len(board.opened)
                if announce is not None:
                    changes = await board.changes(session)
            tally.done += len(batch)
            await session.execute(
                update(ImportRun).where(ImportRun.id == run_id).values(**tally.row())
            )
        if announce is not None and changes:
            await announce(changes)
        if on_progress is not None:
            on_progress(tally.snapshot())

    try:
        await _fetch_and_store(espn, league, days, concurrency, store)
        failed = bool(days) and len(tally.errors) == len(days)
        return await _finish(db, tally, ImportState.FAILED if failed else ImportState.DONE)
    except asyncio.CancelledError:
        tally.errors["run"] = "interrupted: the process stopped"
        await _finish(db, tally, ImportState.FAILED)
        raise
    except Exception as exc:
        logger.exception("import failed")
        tally.errors["run"] = _describe(exc)
        await _finish(db, tally, ImportState.FAILED)
        raise
    finally:
        logger.info("import ended", state=tally.run.state.value, **tally.counts())


async def _fetch_and_store(
    espn: EspnClient,
    league: str,
    days: Sequence[date],
    concurrency: int,
    store: Callable[[Sequence[tuple[date, DayResult]]], Awaitable[None]],
) -> None:
    """Fetch the days and `store` them while the fetching goes on.

    Fetched days wait in a bounded queue for the one writer, which takes every day
    waiting when it is free and stores them together, in one transaction: a database
    slower than the fetching catches up in bigger steps instead of holding it up.
    """
    queue: asyncio.Queue[tuple[date, DayResult] | None] = asyncio.Queue(max(concurrency, 1))

    async def arrived(day: date, result: DayResult) -> None:
        await queue.put((day, result))

    async def writer() -> None:
        finished = False
        while not finished:
            waiting = [await queue.get()]
            while not queue.empty():
                waiting.append(queue.get_nowait())
            finished = waiting[-1] is None  # the end mark is put after every day
            batch = [item for item in waiting if item is not None]
            if batch:
                await store(batch)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(writer())
            await espn.games_for_dates(league, days, concurrency=concurrency, on_result=arrived)
            await queue.put(None)
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None


async def _finish(db: Database, tally: _Tally, state: ImportState) -> ImportRun:
    tally.run.state = state
    tally.run.finished_at = datetime.now(UTC)
    async with db.session() as session:
        await session.execute(
            update(ImportRun)
            .where(ImportRun.id == tally.run.id)
            .values(state=state, finished_at=tally.run.finished_at, **tally.row())
        )
    return tally.snapshot()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Tally:
    """The run's counters as this process knows them; written to the row with each batch."""

    def __init__(self, run: ImportRun) -> None:
        self.run = run
        self.done = 0
        self.seen = 0
        self.opened = 0
        self.errors: dict[str, str] = {}

    def counts(self) -> dict[str, int]:
        return {"dates_done": self.done, "games_seen": self.seen, "markets_opened": self.opened}

    def row(self) -> dict[str, Any]:
        return {**self.counts(), "errors": dict(self.errors)}

    def snapshot(self) -> ImportRun:
        for field, value in self.row().items():
            setattr(self.run, field, value)
        return self.run


class ImportQueueFull(Exception):
    """Too many imports are waiting in this process; the caller should try again later."""


class Importer(Service):
    """Runs queued imports one at a time, as a service the runtime owns and stops.

    The queue belongs to this instance, which the supervisor keeps across restarts;
    on stop the import in progress is cancelled and its run marked failed.
    """

    name = "importer"

    def __init__(
        self,
        db: Database,
        espn: EspnClient,
        *,
        concurrency: int = 8,
        announce: Announce | None = None,
    ) -> None:
        self.db = db
        self.espn = espn
        self.concurrency = concurrency
        self.announce = announce
        self.queue: asyncio.Queue[int] = asyncio.Queue(QUEUE_SIZE)
        self._reserved = 0
        """Places taken before the run's row exists, so a full queue is refused up front."""

    async def enqueue(self, league: str, start: date, end: date, *, requested_by: str) -> int:
        """Record an import and queue it; its id. Raises `ImportQueueFull`."""
        if self.queue.qsize() + self._reserved >= QUEUE_SIZE:
            raise ImportQueueFull(f"{QUEUE_SIZE} imports are already waiting; try again later")
        self._reserved += 1
        try:
            run_id = await create_import(self.db, league, start, end, requested_by=requested_by)
        finally:
            self._reserved -= 1
        self.queue.put_nowait(run_id)
        return run_id

    async def run(self) -> None:
        while (run_id := await self._until_stopped(self.queue.get())) is not None:
            try:
                await self._until_stopped(
                    run_import(
                        self.db,
                        self.espn,
                        run_id,
                        concurrency=self.concurrency,
                        announce=self.announce,
                    )
                )
            except Exception:
                self.log.warning("import did not complete", import_id=run_id)

    async def _until_stopped(self, work: Coroutine[Any, Any, T]) -> T | None:
        """Await `work`, or cancel it when the service is asked to stop (then None)."""
        async with asyncio.TaskGroup() as group:
            task = group.create_task(work)
            stop = group.create_task(self.context.stop.wait())
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            task.cancel()  # a no-op when the work is done
        return None if task.cancelled() else task.result()
