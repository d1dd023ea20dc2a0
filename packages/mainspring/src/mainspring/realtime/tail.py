"""Follow JSON-lines files under one root directory, over SSE.

One reader per file, however many follow it: it polls the file (a stat, then a read of
what was appended, in a worker thread) and hands each new line, encoded once, to every
follower's bounded outbox. A follower that starts behind (a new client reads from the
start, a reconnecting one from its Last-Event-ID) first pages through the file itself,
at the pace its client reads, then joins the live lines.

Readers are bounded per root (`max_readers`; a stream that would need one more is refused
with 503 and Retry-After), and a reader whose file does not exist yet does not poll: the
root's one waiter looks for all such files at once, one stat call per poll interval however
many are awaited, and wakes a reader when its file appears.

A line's id is ``<inode>:<offset>``: the file, and the byte offset just past the line,
where a reconnecting client resumes exactly (a bare offset is accepted too). A replaced
file (new inode) or a truncated one starts again from 0 after a ``resync`` event. Once
``until()`` says the writer is done, and every line written is delivered, the stream
ends with an ``end`` event.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

import anyio.to_thread
import structlog
from fastapi import HTTPException
from starlette.requests import Request

from mainspring import lifecycle
from mainspring.clock import Clock, SystemClock
from mainspring.realtime.lines import Batch, Gone, Misaligned, TailFile, read_range
from mainspring.realtime.message import Item, Message, MessageId, Notice, Resync
from mainspring.realtime.metrics import RealtimeMetrics, realtime_metrics
from mainspring.realtime.outbox import BATCH, CloseReason, Outbox
from mainspring.realtime.policy import ChannelPolicy
from mainspring.realtime.sse import SYSTEM_CLOCK, EventStream, resume_from
from mainspring.realtime.turns import Turns
from mainspring.resources.base import Resource

log = structlog.get_logger("mainspring.realtime")

T = TypeVar("T")

BUSY_RETRY_AFTER = 5
"""Seconds a client refused for want of a reader is told to wait (streams end all the time)."""

Until = Callable[[], bool | Awaitable[bool]]
"""True once the file's writer has finished for good."""


class Offload(Protocol):
    """Runs blocking file work away from the event loop (tests may run it inline)."""

    def __call__(self, work: Callable[[], T]) -> Awaitable[T]: ...


async def in_thread(work: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(work)


class PathRefused(ValueError):
    """A name the tail root will not serve; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class TailBusy(RuntimeError):
    """The root already runs `max_readers` readers: following one more file must wait."""


class TailRoot(Resource):
    """The directory whose files may be tailed; open it with the runtime:
    ``tails = await rt.open(TailRoot(settings.logs_dir))``."""

    name = "tails"

    def __init__(
        self,
        root: str | Path,
        *,
        poll_interval: float = 0.1,
        wait_timeout: float = 60.0,
        max_readers: int = 256,
        policy: ChannelPolicy | None = None,
        clock: Clock | None = None,
        offload: Offload = in_thread,
        metrics: RealtimeMetrics | None = None,
    ) -> None:
        self.base = Path(root).resolve()
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        """How long a file that does not exist yet is waited for."""
        if max_readers < 1:
            raise ValueError("max_readers must be at least 1")
        self.max_readers = max_readers
        """Files followed at once (one reader each, however many follow it)."""
        self.policy = policy or ChannelPolicy()
        self.clock = clock or SystemClock()
        self.offload = offload
        self.metrics = metrics or realtime_metrics()
        self._readers: dict[Path, _Reader] = {}
        self.turns = Turns()
        self._tasks: set[asyncio.Task[None]] = set()
        self.absent = _Absent(self)
        self._unhook_drain: Callable[[], None] | None = None

    async def open(self) -> None:
        await self.check()
        self._unhook_drain = lifecycle.on_draining_in_loop(
            lambda: self._end_all(CloseReason.SHUTDOWN)
        )

    async def close(self) -> None:
        if self._unhook_drain is not None:
            self._unhook_drain()
        self._end_all(CloseReason.SHUTDOWN)
        for reader in list(self._readers.values()):
            reader.stop()
        self.absent.close()
        # Not cancelled: a cancelled worker-thread call would go on using the reader's file.
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def check(self) -> None:
        if not await self.offload(self.base.is_dir):
            raise NotADirectoryError(f"the tail root {self.base} is not a directory")

    def _end_all(self, reason: CloseReason) -> None:
        for reader in list(self._readers.values()):
            for follower in list(reader.followers):
                follower.close(reason)

    def resolve(self, relative: str) -> Path:
        """The file `relative` names under the root; PathRefused (400, 403) otherwise.

        Resolving follows symlinks (a few lstat calls, cheap enough for the event loop), so a
        link that leads out of the root is refused; and the reader opens the resolved path
        with O_NOFOLLOW, so a link planted at that name later is not followed either.
        """
        parts = PurePosixPath(relative)
        if not relative or "\x00" in relative:
            raise PathRefused(400, "name a file under the tail root")
        if parts.is_absolute() or relative.startswith("\\"):
            raise PathRefused(400, f"the path must be relative to the tail root: {relative!r}")
        if ".." in parts.parts:
            raise PathRefused(400, f"'..' is not allowed under the tail root: {relative!r}")
        try:
            path = (self.base / parts).resolve()
        except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
            raise PathRefused(400, f"{relative!r} cannot be resolved") from None
        if not path.is_relative_to(self.base):
            raise PathRefused(403, f"{relative!r} leads out of the tail root")
        if path == self.base:
            raise PathRefused(400, "name a file under the tail root")
        return path

    @asynccontextmanager
    async def follow(
        self, path: Path, resume: MessageId | None, until: Until
    ) -> AsyncIterator[Outbox]:
        """Follow the file at `path` (from :meth:`resolve`): from the start, or after
        `resume`; the outbox ends after the last line once `until()` is true. TailBusy when
        the file has no reader yet and the root runs `max_readers` already."""
        reader = self._readers.get(path)
        if reader is None:
            if len(self._readers) >= self.max_readers:
                raise TailBusy(f"{self.max_readers} files are followed already; retry later")
            reader = self._readers[path] = _Reader(self, path)
            self._spawn(reader.run(), name=f"tail {path}")
        follower = _Follower(reader, resume, until)
        reader.add(follower)
        self.metrics.tail_followers.inc()
        try:
            yield follower
        finally:
            self.metrics.tail_followers.dec()
            follower.close(CloseReason.CLIENT_GONE)
            reader.remove(follower)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A task of this root's, awaited (never cancelled) by `close`."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, reader: _Reader) -> None:
        if self._readers.get(reader.path) is reader:
            del self._readers[reader.path]


class _Follower(Outbox):
    """One stream's outbox; while behind the reader it pages through the file itself."""

    def __init__(self, reader: _Reader, resume: MessageId | None, until: Until) -> None:
        super().__init__(turns=reader.root.turns)
        self.reader = reader
        self.resume = resume
        self.until = until
        self.after = 0
        """The end of the last line this follower was given."""
        self.behind = False

    async def get(self, limit: int = BATCH) -> list[Item]:
        while True:
            if self.behind and not len(self) and self.closed in (None, CloseReason.DONE):
                items = await self.reader.page(self)
                if items:
                    return items
            elif len(self) or self.closed is not None:
                return await super().get(limit)
            else:
                await self._wait()

    def place(self, after: int, resync: Resync | None) -> None:
        if resync is not None:
            self.put_control(resync)
        self.after = after
        self.behind = after < self.reader.position
        self._wake()


class _Reader:
    """The one reader of one file, for as long as anyone follows it."""

    def __init__(self, root: TailRoot, path: Path) -> None:
        self.root = root
        self.path = path
        self.name = path.relative_to(root.base).as_posix()
        self.file = TailFile(path)
        self.followers: dict[_Follower, None] = {}
        self.epoch: str | None = None
        self.position = 0
        self.generation = 0
        """Counts restarts: a page read across one is stale."""
        self.stopped = asyncio.Event()
        self.wakeup = asyncio.Event()
        """Set when the file appears (by the root's waiter), or when the reader stops."""

    def add(self, follower: _Follower) -> None:
        self.followers[follower] = None
        if self.epoch is not None:
            self._place(follower, reset=False)

    def remove(self, follower: _Follower) -> None:
        self.followers.pop(follower, None)
        if not self.followers:
            self.stop()

    def stop(self) -> None:
        self.stopped.set()
        self.wakeup.set()
        self.root._forget(self)

    async def run(self) -> None:
        root, clock = self.root, self.root.clock
        root.metrics.tail_readers.inc()
        waiting_since = clock.monotonic()
        try:
            while not self.stopped.is_set():
                done = await self._until()  # before reading: what was written by then is read
                batch = await self._read(done)
                if batch is None:
                    return
                if done:
                    self._finish()
                    return
                if not batch.missing:
                    waiting_since = clock.monotonic()
                    await clock.sleep_until(clock.monotonic() + root.poll_interval, self.stopped)
                    continue
                deadline = waiting_since + root.wait_timeout
                if clock.monotonic() >= deadline:
                    detail = f"{self.name} did not appear within {root.wait_timeout:g}s"
                    self._finish(Notice.of(type="error", error="not_found", detail=detail))
                    return
                await root.absent.wait(self, deadline)
        except Exception as error:
            log.warning("tailed file unreadable", path=self.name, error=str(error))
            detail = f"{self.name} cannot be read"
            self._finish(Notice.of(type="error", error="unreadable", detail=detail))
        finally:
            self.file.close()  # no worker call is running: readers are stopped, not cancelled
            root.metrics.tail_readers.dec()

    async def _read(self, final: bool) -> Batch | None:
        """Read until caught up with the file; None once stopped."""
        while True:
            batch = await self.root.offload(functools.partial(self.file.read, final))
            if self.stopped.is_set():
                return None
            self._apply(batch)
            if not batch.more:
                return batch

    def _apply(self, batch: Batch) -> None:
        if batch.skipped:
            log.warning("line too long to stream, skipped", path=self.name)
        if batch.lines:
            assert self.epoch is not None
            messages = [
                Message(self.name, MessageId(self.epoch, end), data) for end, data in batch.lines
            ]
            policy = self.root.policy
            for follower in self.followers:
                if not follower.behind:
                    for message in messages:
                        if message.id.offset > follower.after:
                            follower.put(message, policy)
                            follower.after = message.id.offset
        self.position = batch.position
        if batch.restart:
            reset = self.epoch is not None
            self.epoch = f"{self.file.ino:x}"
            self.generation += 1
            for follower in self.followers:
                self._place(follower, reset=reset)

    def _place(self, follower: _Follower, *, reset: bool) -> None:
        """Where a follower starts in the file now open: after its resume id when that
        names this file, else from the start (with a resync when it had seen another)."""
        assert self.epoch is not None
        resume, follower.resume = follower.resume, None
        if not reset and (resume is None or resume.epoch in ("", self.epoch)):
            follower.place(resume.offset if resume else 0, None)
        else:
            follower.place(0, Resync(self.name, MessageId(self.epoch, 0)))

    async def page(self, follower: _Follower) -> list[Item]:
        """The next lines for a follower that is behind, read by its own writer's task."""
        generation, epoch, ino = self.generation, self.epoch, self.file.ino
        assert epoch is not None
        work = functools.partial(read_range, self.path, ino, follower.after, self.position)
        try:
            lines, after = await self.root.offload(work)
        except Gone:  # the reader is about to notice and restart everyone
            lines, after = [], None
        except Misaligned:
            if generation == self.generation:
                follower.place(0, Resync(self.name, MessageId(epoch, 0)))
            return []
        if generation != self.generation:
            return []
        if after is None:
            follower.behind = False
            return []
        follower.after = after
        follower.behind = after < self.position
        return [Message(self.name, MessageId(epoch, end), data) for end, data in lines]

    async def _until(self) -> bool:
        # Followers of one file describe the same writer: asking one of them is enough.
        follower = next(iter(self.followers), None)
        if follower is None:
            return False
        try:
            result = follower.until()
            return bool(await result if inspect.isawaitable(result) else result)
        except Exception as error:
            log.warning("tail end condition failed", path=self.name, error=str(error))
            return False

    def _finish(self, notice: Notice | None = None) -> None:
        self.root._forget(self)
        for follower in self.followers:
            if notice is not None:
                follower.put_control(notice)
            follower.close(CloseReason.DONE)


class _Absent:
    """The root's one waiter for files that do not exist yet: each poll interval it looks
    for all of them in one worker-thread call, asks their `until()`, and wakes the readers
    whose file appeared or whose writer is done. Idle (no timer) while nothing is awaited."""

    def __init__(self, root: TailRoot) -> None:
        self.root = root
        self.readers: dict[_Reader, None] = {}
        """Waiting now, in arrival order."""
        self._wanted = asyncio.Event()
        self._closed = asyncio.Event()
        self._running = False

    async def wait(self, reader: _Reader, deadline: float) -> None:
        """Until `reader`'s file may be there, its writer is done, `deadline`, or its stop."""
        self.readers[reader] = None
        if not self._running and not self._closed.is_set():
            self._running = True
            self.root._spawn(self._run(), name=f"tail waiter {self.root.base}")
        self._wanted.set()
        try:
            await self.root.clock.sleep_until(deadline, reader.wakeup)
        finally:
            self.readers.pop(reader, None)
            reader.wakeup.clear()

    def close(self) -> None:
        self._closed.set()
        self._wanted.set()

    async def _run(self) -> None:
        try:
            await self._watch()
        finally:
            self._running = False  # the next wait starts it again, unless closed

    async def _watch(self) -> None:
        root, clock = self.root, self.root.clock
        while not self._closed.is_set():
            if not self.readers:
                self._wanted.clear()
                await self._wanted.wait()  # not a timer: nothing is due while nobody waits
                continue
            await clock.sleep_until(clock.monotonic() + root.poll_interval, self._closed)
            readers = list(self.readers)
            try:
                present = await root.offload(functools.partial(_present, [r.path for r in readers]))
            except OSError as error:
                log.warning("tail root unreadable", root=str(root.base), error=str(error))
                present = [False] * len(readers)
            for reader, there in zip(readers, present, strict=True):
                if there or await reader._until():
                    reader.wakeup.set()


def _present(paths: Sequence[Path]) -> list[bool]:
    """Which of `paths` name something (what the reader's own stat would find)."""
    return [os.path.exists(path) for path in paths]


def parse_resume(text: str) -> MessageId:
    """``inode:offset`` as sent, or a bare byte offset (any file)."""
    if text.isdigit() and len(text) <= 20:
        return MessageId("", int(text))
    return MessageId.parse(text)


def tail_jsonl(
    request: Request,
    root: TailRoot,
    name: str,
    *,
    until: Until,
    keepalive: float = 15.0,
    retry_ms: int = 3000,
    clock: Clock = SYSTEM_CLOCK,
) -> EventStream:
    """Stream the JSON-lines file `name` under `root` (4xx for a path that leaves it), from
    the start or the client's Last-Event-ID, waiting for the file if it does not exist yet
    (keepalives meanwhile), until `until()` is true and every line is delivered."""
    try:
        path = root.resolve(name)
    except PathRefused as refused:
        raise HTTPException(refused.status, str(refused)) from None
    resume = resume_from(request, parse_resume)

    subscription = _admitted(root, path, resume, until)
    return EventStream(subscription, keepalive=keepalive, retry_ms=retry_ms, clock=clock)


@asynccontextmanager
async def _admitted(
    root: TailRoot, path: Path, resume: MessageId | None, until: Until
) -> AsyncIterator[Outbox]:
    """`root.follow`, with TailBusy answered as 503 (the stream has not started yet)."""
    async with AsyncExitStack() as following:
        try:
            outbox = await following.enter_async_context(root.follow(path, resume, until))
        except TailBusy as busy:
            headers = {"Retry-After": str(BUSY_RETRY_AFTER)}
            raise HTTPException(503, str(busy), headers=headers) from None
        yield outbox
