"""Tailing JSON-lines files: the shared reader on a manual clock (file reads run inline),
then a real uvicorn process with httpx streaming clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sse_support import EventReader, eventually, realtime_server, stream_client

from mainspring.clock import ManualClock, settle
from mainspring.realtime import (
    Closed,
    CloseReason,
    Message,
    MessageId,
    Notice,
    PathRefused,
    Resync,
    TailBusy,
    TailRoot,
)
from mainspring.realtime.message import Item
from mainspring.realtime.metrics import RealtimeMetrics
from mainspring.realtime.outbox import Outbox

T = TypeVar("T")
MAX_READERS = 8
POLL = 1.0
WAIT = 30.0


class Reads:
    """Runs file work inline (so the manual clock alone drives the reader) and counts the
    calls by function: reads of tailed files (`read`), as opposed to the pages followers
    read to catch up, and the waiter's looks for files that do not exist yet (`_present`)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    @property
    def tail_reads(self) -> int:
        return self.calls["read"]

    async def __call__(self, work: Callable[[], T]) -> T:
        self.calls[getattr(getattr(work, "func", None), "__name__", "")] += 1
        return work()


@pytest.fixture
def reads() -> Reads:
    return Reads()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def root(
    tmp_path: Path, clock: ManualClock, reads: Reads, registry: CollectorRegistry
) -> AsyncIterator[TailRoot]:
    base = tmp_path / "logs"
    base.mkdir()
    metrics = RealtimeMetrics(registry)
    tails = TailRoot(
        base, poll_interval=POLL, wait_timeout=WAIT, clock=clock, offload=reads, metrics=metrics
    )
    yield tails
    await tails.close()


def never() -> bool:
    return False


async def take(outbox: Outbox, count: int = 1) -> list[Item]:
    """At least `count` items, however they are batched."""
    items: list[Item] = []
    while len(items) < count:
        # The bound only turns a missing item into a failure instead of a hang.
        items += await asyncio.wait_for(outbox.get(), 5)
    return items


def data(items: list[Item]) -> list[Any]:
    assert all(isinstance(item, Message) for item in items), items
    return [json.loads(item.data) for item in items if isinstance(item, Message)]


def offsets(items: list[Item]) -> list[int]:
    return [item.id.offset for item in items if isinstance(item, Message)]


def idle(outbox: Outbox) -> bool:
    """Nothing to hand out: no item queued and no page to read."""
    return len(outbox) == 0 and not getattr(outbox, "behind", False)


def append(path: Path, text: str) -> None:
    with path.open("ab") as file:
        file.write(text.encode())


# -- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("../outside.jsonl", 400),
        ("runs/../../outside.jsonl", 400),
        ("/etc/passwd", 400),
        ("", 400),
        (".", 400),
        ("link-out/secret.jsonl", 403),
        ("file-link-out.jsonl", 403),
    ],
)
def test_paths_that_leave_the_root_are_refused(
    root: TailRoot, tmp_path: Path, name: str, status: int
) -> None:
    (tmp_path / "outside").mkdir()
    (root.base / "link-out").symlink_to(tmp_path / "outside")
    (root.base / "file-link-out.jsonl").symlink_to(tmp_path / "outside" / "x.jsonl")
    with pytest.raises(PathRefused) as refused:
        root.resolve(name)
    assert refused.value.status == status


def test_paths_under_the_root_resolve_whether_or_not_they_exist(root: TailRoot) -> None:
    (root.base / "runs").mkdir()
    (root.base / "latest").symlink_to(root.base / "runs")
    assert root.resolve("runs/a.jsonl") == root.base / "runs" / "a.jsonl"
    assert root.resolve("latest/a.jsonl") == root.base / "runs" / "a.jsonl"


async def test_a_symlink_planted_after_the_check_is_not_followed(
    root: TailRoot, tmp_path: Path
) -> None:
    path = root.resolve("late.jsonl")
    (tmp_path / "secret.jsonl").write_text('{"secret":1}\n')
    path.symlink_to(tmp_path / "secret.jsonl")
    async with root.follow(path, None, never) as follower:
        await settle()
        (notice,) = await take(follower)
        with pytest.raises(Closed) as closed:
            await take(follower)
    assert isinstance(notice, Notice)
    assert json.loads(notice.frame)["error"] == "unreadable"
    assert closed.value.reason is CloseReason.DONE


# -- the shared reader -------------------------------------------------------------------


async def test_a_file_created_later_written_in_pieces_then_truncated_then_replaced(
    root: TailRoot, clock: ManualClock
) -> None:
    path = root.resolve("run.jsonl")
    async with root.follow(path, None, never) as follower:
        await settle()
        assert idle(follower)  # no file yet: waiting

        path.write_text('{"n":1}\n{"n"')
        await clock.advance(POLL)
        first = await take(follower)
        assert data(first) == [{"n": 1}]
        assert idle(follower)  # the unfinished line waits for its newline

        append(path, ":2}\n")
        await clock.advance(POLL)
        second = await take(follower)
        assert data(second) == [{"n": 2}]
        assert offsets(first + second) == [8, 16]  # each id is where the next line starts
        epoch = f"{path.stat().st_ino:x}"
        assert second[0].id == MessageId(epoch, 16)  # type: ignore[union-attr]

        path.write_text("")  # truncated in place
        await clock.advance(POLL)
        append(path, '{"n":3}\n')
        await clock.advance(POLL)
        resync, *third = await take(follower, 2)
        assert resync == Resync("run.jsonl", MessageId(epoch, 0))
        assert data(third) == [{"n": 3}]

        replacement = path.with_name("next.tmp")
        replacement.write_text('{"n":4}\n')
        os.replace(replacement, path)
        await clock.advance(POLL)
        resync, *fourth = await take(follower, 2)
        assert resync == Resync("run.jsonl", MessageId(f"{path.stat().st_ino:x}", 0))
        assert data(fourth) == [{"n": 4}]


async def test_one_reader_serves_every_follower_of_a_file(
    root: TailRoot, clock: ManualClock, reads: Reads, registry: CollectorRegistry
) -> None:
    def gauge(name: str) -> float | None:
        return registry.get_sample_value(f"mainspring_realtime_{name}")

    path = root.resolve("shared.jsonl")
    path.write_text('{"n":0}\n')
    async with AsyncExitStack() as stack:
        followers = [
            await stack.enter_async_context(root.follow(path, None, never)) for _ in range(20)
        ]
        await settle()
        for follower in followers:
            assert data(await take(follower)) == [{"n": 0}]
        assert len(root._readers) == 1
        assert (gauge("tail_readers"), gauge("tail_followers")) == (1, 20)

        before = reads.tail_reads
        append(path, '{"n":1}\n')
        await clock.advance(POLL)
        received = [await take(follower) for follower in followers]
        assert reads.tail_reads - before == 1
        assert {id(items[0]) for items in received} == {id(received[0][0])}  # encoded once
    await settle()
    assert not root._readers
    assert (gauge("tail_readers"), gauge("tail_followers")) == (0, 0)


async def test_the_stream_ends_once_the_writer_is_done_and_every_line_is_delivered(
    root: TailRoot, clock: ManualClock
) -> None:
    path = root.resolve("job.jsonl")
    path.write_text('{"n":1}\n')
    done = False
    async with root.follow(path, None, lambda: done) as early:
        await settle()
        assert data(await take(early)) == [{"n": 1}]
        append(path, '{"n":2}\n{"n":3}')  # the last line never gets its newline
        async with root.follow(path, None, lambda: done) as late:  # starts from the top
            done = True
            await clock.advance(POLL)
            assert data(await take(early)) == [{"n": 2}, {"n": 3}]
            assert data(await take(late)) == [{"n": 1}, {"n": 2}, {"n": 3}]
            for follower in (early, late):
                with pytest.raises(Closed) as closed:
                    await take(follower)
                assert closed.value.reason is CloseReason.DONE


async def test_resume_starts_right_after_the_last_line_seen(root: TailRoot) -> None:
    path = root.resolve("resume.jsonl")
    path.write_text('{"n":1}\n{"n":2}\n{"n":3}\n')
    epoch = f"{path.stat().st_ino:x}"

    async def read_from(resume: MessageId) -> list[Item]:
        async with root.follow(path, resume, never) as follower:
            await settle()
            items = await take(follower)
            return items + await take(follower) if isinstance(items[0], Resync) else items

    assert data(await read_from(MessageId(epoch, 8))) == [{"n": 2}, {"n": 3}]
    assert data(await read_from(MessageId("", 16))) == [{"n": 3}]  # a bare offset
    for stale in (MessageId("another-file", 8), MessageId(epoch, 3)):  # replaced; mid-line
        items = await read_from(stale)
        assert items[0] == Resync("resume.jsonl", MessageId(epoch, 0))
        assert data(items[1:]) == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_a_file_that_never_appears_ends_the_stream_after_the_wait(
    root: TailRoot, clock: ManualClock
) -> None:
    async with root.follow(root.resolve("never.jsonl"), None, never) as follower:
        await settle()
        await clock.advance(WAIT + POLL)
        (notice,) = await take(follower)
        assert json.loads(notice.frame)["error"] == "not_found"
        with pytest.raises(Closed):
            await take(follower)


async def test_files_that_do_not_exist_yet_share_one_waiter_and_readers_are_bounded(
    tmp_path: Path, clock: ManualClock, reads: Reads, registry: CollectorRegistry
) -> None:
    bound = 20
    tails = TailRoot(
        tmp_path,
        poll_interval=POLL,
        wait_timeout=WAIT,
        max_readers=bound,
        clock=clock,
        offload=reads,
        metrics=RealtimeMetrics(registry),
    )
    try:
        async with AsyncExitStack() as stack:
            followers = [
                await stack.enter_async_context(
                    tails.follow(tails.resolve(f"missing-{n}.jsonl"), None, never)
                )
                for n in range(bound)
            ]
            for n in (bound, bound + 1):
                with pytest.raises(TailBusy):
                    await stack.enter_async_context(
                        tails.follow(tails.resolve(f"missing-{n}.jsonl"), None, never)
                    )
            # A file already followed takes more followers: its reader is shared.
            again = await stack.enter_async_context(
                tails.follow(tails.resolve("missing-0.jsonl"), None, never)
            )
            await settle()
            first_reads = reads.tail_reads
            assert first_reads == bound  # each reader looked once, then handed over

            ticks = 5
            for _ in range(ticks):
                await clock.advance(POLL)
            assert reads.tail_reads == first_reads  # no reader polls on its own
            assert reads.calls["_present"] == ticks  # one look at all of them per tick
            gauge = registry.get_sample_value("mainspring_realtime_tail_readers")
            assert (len(tails._readers), gauge) == (bound, bound)

            (tmp_path / "missing-3.jsonl").write_text('{"n":3}\n')
            await clock.advance(POLL)
            assert data(await take(followers[3])) == [{"n": 3}]
            assert all(idle(f) for n, f in enumerate(followers) if n != 3)
            assert idle(again)
            assert len(tails.absent.readers) == bound - 1
    finally:
        await tails.close()
    assert not tails._tasks


async def test_lines_that_are_not_json_arrive_as_strings(root: TailRoot) -> None:
    path = root.resolve("mixed.jsonl")
    path.write_bytes(b'{"ok":true}\r\nnot json\n\n[1,2]\n')
    async with root.follow(path, None, never) as follower:
        await settle()
        items = await take(follower)
    assert data(items) == [{"ok": True}, "not json", [1, 2]]
    assert offsets(items) == [13, 22, 29]


# -- a real server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tail_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tails")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tail_root: Path) -> Iterator[str]:
    env = {
        "TAIL_ROOT": str(tail_root),
        "TAIL_POLL": "0.05",
        "TAIL_MAX_READERS": str(MAX_READERS),
        "SSE_KEEPALIVE": "0.2",
    }
    with realtime_server(tmp_path_factory.mktemp("run"), env) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with stream_client() as client:
        yield client


async def test_tail_over_http_from_before_the_file_exists_to_the_end(
    server: str, client: httpx.AsyncClient, tail_root: Path
) -> None:
    path = tail_root / "job-1.jsonl"
    async with client.stream("GET", f"{server}/tail/job-1.jsonl") as response:
        assert response.status_code == 200
        reader = EventReader(response)
        assert await reader.comment() == "keepalive"  # heartbeats while the file is absent
        path.write_text('{"n":1}\n{"n":')
        first = await reader.next()
        append(path, "2}\n")
        second = await reader.next()
        path.write_text("")
        resync = await reader.next()
        append(path, '{"n":3}\n')
        third = await reader.next()
        (tail_root / "job-1.jsonl.done").touch()
        rest = await reader.rest()
    epoch = f"{path.stat().st_ino:x}"
    assert [first.id, second.id, resync.id, third.id] == [f"{epoch}:{n}" for n in (8, 16, 0, 8)]
    assert [e.json()["data"] for e in (first, second, third)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert resync.event == "resync"
    assert [(e.event, e.json()) for e in rest] == [("end", {"type": "end"})]


async def test_tail_resumes_from_last_event_id(
    server: str, client: httpx.AsyncClient, tail_root: Path
) -> None:
    (tail_root / "job-2.jsonl").write_text('{"n":1}\n{"n":2}\n{"n":3}\n')
    (tail_root / "job-2.jsonl.done").touch()
    async with client.stream("GET", f"{server}/tail/job-2.jsonl") as response:
        everything = await EventReader(response).rest()
    resume = {"Last-Event-ID": str(everything[0].id)}
    async with client.stream("GET", f"{server}/tail/job-2.jsonl", headers=resume) as response:
        resumed = await EventReader(response).rest()
    async with client.stream("GET", f"{server}/tail/job-2.jsonl?last_id=16") as response:
        from_offset = await EventReader(response).rest()
    assert [e.id for e in resumed] == [e.id for e in everything[1:]]
    assert [e.id for e in from_offset] == [e.id for e in everything[2:]]
    assert everything[-1].event == "end"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("%2e%2e/secret.jsonl", 400),
        ("runs/%2e%2e/%2e%2e/secret.jsonl", 400),
        ("/etc/passwd", 400),
        ("escape/secret.jsonl", 403),
    ],
)
async def test_tail_refuses_paths_out_of_the_root(
    server: str, client: httpx.AsyncClient, tail_root: Path, path: str, status: int
) -> None:
    link = tail_root / "escape"
    if not link.is_symlink():
        link.symlink_to(tail_root.parent)
    response = await client.get(f"{server}/tail/{path}")
    assert response.status_code == status
    assert "tail root" in response.json()["detail"]


async def test_one_reader_for_many_streams_of_a_file(
    server: str, client: httpx.AsyncClient, tail_root: Path
) -> None:
    path = tail_root / "busy.jsonl"
    path.write_text('{"n":0}\n')
    async with AsyncExitStack() as stack:
        readers = []
        for _ in range(25):
            response = await stack.enter_async_context(
                client.stream("GET", f"{server}/tail/busy.jsonl")
            )
            readers.append(EventReader(response))
        for reader in readers:
            assert (await reader.next()).json()["data"] == {"n": 0}
        assert await gauges(client, server) == {"tail_readers": 1.0, "tail_followers": 25.0}
        append(path, '{"n":1}\n')
        for reader in readers:
            assert (await reader.next()).json()["data"] == {"n": 1}
    await eventually(lambda: gauges(client, server), {"tail_readers": 0.0, "tail_followers": 0.0})


async def test_streams_over_the_reader_bound_are_refused_with_503(
    server: str, client: httpx.AsyncClient
) -> None:
    async with AsyncExitStack() as stack:
        for n in range(MAX_READERS):
            response = await stack.enter_async_context(
                client.stream("GET", f"{server}/tail/absent-{n}.jsonl")
            )
            assert response.status_code == 200
        refused = await client.get(f"{server}/tail/absent-{MAX_READERS}.jsonl")
        assert await gauges(client, server) == {
            "tail_readers": MAX_READERS,
            "tail_followers": MAX_READERS,
        }
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert f"{MAX_READERS} files are followed already" in refused.json()["detail"]
    await eventually(lambda: gauges(client, server), {"tail_readers": 0.0, "tail_followers": 0.0})


async def gauges(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    text = (await client.get(f"{base}/metrics")).text
    found = re.findall(r"^mainspring_realtime_(tail_\w+) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}
