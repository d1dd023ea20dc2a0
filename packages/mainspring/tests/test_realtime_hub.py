"""The hub in one process: policies, history and resume, cancellation safety, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from mainspring import lifecycle
from mainspring.realtime import (
    ChannelPolicy,
    Closed,
    CloseReason,
    Hub,
    Message,
    MessageId,
    Notice,
    Overflow,
    Resync,
    Subscriber,
)
from mainspring.realtime.metrics import RealtimeMetrics
from mainspring.realtime.outbox import Outbox
from mainspring.realtime.turns import WRITERS_PER_TURN

POLICIES = {
    "feed": ChannelPolicy(max_lag=5, history=10),
    "drop": ChannelPolicy(overflow=Overflow.DROP_OLDEST, max_lag=3),
    "bytes": ChannelPolicy(overflow=Overflow.DROP_OLDEST, max_queued_bytes=100),
    "games:*": ChannelPolicy(overflow=Overflow.LATEST_ONLY, max_lag=4),
}


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub(policies=POLICIES, metrics=RealtimeMetrics(CollectorRegistry()))
    await hub.open()
    yield hub
    await hub.close()


def payloads(items: list[Message | Resync | Notice]) -> list[object]:
    return [json.loads(item.frame).get("data") for item in items]


async def drain(subscriber: Subscriber) -> list[Message | Resync | Notice]:
    return await asyncio.wait_for(subscriber.outbox.get(), 1)


async def test_message_ids_parse_back_and_refuse_garbage() -> None:
    assert MessageId.parse("ab12:7") == MessageId("ab12", 7)
    assert str(MessageId("ab12", 7)) == "ab12:7"
    for bad in ("", "7", "ab:", ":3", "ab:-1", "ab:x", "a" * 200 + ":1"):
        with pytest.raises(ValueError, match="epoch:offset"):
            MessageId.parse(bad)


async def test_a_message_is_encoded_once_and_shared(hub: Hub) -> None:
    async with hub.connect() as a, hub.connect() as b:
        await a.subscribe("feed")
        await b.subscribe("feed")
        sent = await hub.publish("feed", {"score": [101, 99]})
        (got_a,), (got_b,) = await drain(a), await drain(b)
    assert got_a is got_b is sent
    assert got_a.frame is got_b.frame
    assert payloads([got_a]) == [{"score": [101, 99]}]


async def test_invalid_channel_names_are_refused(hub: Hub) -> None:
    with pytest.raises(ValueError, match="channel name"):
        await hub.publish("bad channel", 1)
    async with hub.connect() as subscriber:
        with pytest.raises(ValueError, match="channel name"):
            await subscriber.subscribe("../etc")
        assert subscriber.channels == set()


async def test_a_slow_subscriber_is_disconnected_and_the_others_get_everything(hub: Hub) -> None:
    async with hub.connect() as slow, hub.connect() as fast:
        await slow.subscribe("feed")
        await fast.subscribe("feed")
        received: list[object] = []
        for n in range(8):
            await hub.publish("feed", n)
            received += payloads(await drain(fast))
        assert received == list(range(8))
        assert slow.outbox.closed is CloseReason.SLOW
        with pytest.raises(Closed):
            await drain(slow)
        assert hub.metrics.slow_disconnects.labels("feed")._value.get() == 1


async def test_drop_oldest_keeps_the_newest_within_the_bounds(hub: Hub) -> None:
    async with hub.connect() as subscriber:
        await subscriber.subscribe("drop")
        for n in range(10):
            await hub.publish("drop", n)
        assert payloads(await drain(subscriber)) == [7, 8, 9]
        assert subscriber.outbox.closed is None
        assert hub.metrics.dropped.labels("drop")._value.get() == 7


async def test_drop_oldest_bounds_queued_bytes(hub: Hub) -> None:
    async with hub.connect() as subscriber:
        await subscriber.subscribe("bytes")
        for n in range(10):
            await hub.publish("bytes", "x" * 30 + str(n))
        assert subscriber.outbox.queued_bytes <= 100
        assert payloads(await drain(subscriber)) == ["x" * 30 + str(n) for n in (7, 8, 9)]
        assert subscriber.outbox.queued_bytes == 0


async def test_latest_only_keeps_one_message_per_key_in_first_queued_order(hub: Hub) -> None:
    async with hub.connect() as subscriber:
        await subscriber.subscribe("games:nba")
        for n in range(6):
            await hub.publish("games:nba", {"game": n % 2, "n": n}, key=str(n % 2))
        await hub.publish("games:nba", {"game": None})
        assert payloads(await drain(subscriber)) == [
            {"game": 0, "n": 4},
            {"game": 1, "n": 5},
            {"game": None},
        ]
        # Past the bounds with distinct keys it falls back to dropping the oldest.
        for n in range(6):
            await hub.publish("games:nba", {"game": n}, key=f"g{n}")
        assert payloads(await drain(subscriber)) == [{"game": n} for n in range(2, 6)]


async def test_resume_gets_exactly_the_missed_messages(hub: Hub) -> None:
    first = [await hub.publish("feed", n) for n in range(3)]
    missed = [await hub.publish("feed", n) for n in range(3, 6)]
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed", first[-1].id)
        assert await drain(subscriber) == missed
        await subscriber.subscribe("feed", first[0].id)  # already subscribed: no replay
        await hub.publish("feed", 6)
        assert payloads(await drain(subscriber)) == [6]


async def test_resume_from_the_head_gets_nothing_and_from_a_gap_gets_resync(hub: Hub) -> None:
    sent = [await hub.publish("feed", n) for n in range(15)]
    async with hub.connect() as current, hub.connect() as behind, hub.connect() as stranger:
        await current.subscribe("feed", sent[-1].id)
        await behind.subscribe("feed", sent[2].id)
        await stranger.subscribe("feed", MessageId("other-epoch", 3))
        await hub.publish("feed", 15)
        assert payloads(await drain(current)) == [15]
        for subscriber in (behind, stranger):
            resync, live = await drain(subscriber)
            assert resync == Resync("feed", sent[-1].id)
            assert payloads([live]) == [15]
        assert hub.metrics.resyncs.labels("feed")._value.get() == 2


async def test_messages_published_during_a_resume_arrive_once_in_order(hub: Hub) -> None:
    first = await hub.publish("feed", 0)
    await hub.publish("feed", 1)
    backend = hub.backend
    real_since = backend.since

    async def slow_since(*args: object) -> object:
        # A publish lands between registering the subscriber and reading the history.
        await hub.publish("feed", 2)
        return await real_since(*args)  # type: ignore[arg-type]

    backend.since = slow_since  # type: ignore[method-assign]
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed", first.id)
        assert payloads(await drain(subscriber)) == [1, 2]


async def test_a_cancelled_subscribe_leaves_nothing_behind(hub: Hub) -> None:
    gate = asyncio.Event()
    real_subscribe = hub.backend.subscribe

    async def stuck(channel: str) -> None:
        await gate.wait()
        await real_subscribe(channel)

    hub.backend.subscribe = stuck  # type: ignore[method-assign]
    async with hub.connect() as subscriber:
        attempt = asyncio.ensure_future(subscriber.subscribe("feed"))
        await asyncio.sleep(0)
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        assert subscriber.channels == set()
        assert not hub._local.get("feed")
        hub.backend.subscribe = real_subscribe  # type: ignore[method-assign]
        await subscriber.subscribe("feed")
        await hub.publish("feed", "after")
        assert payloads(await drain(subscriber)) == ["after"]


async def test_leaving_unsubscribes_and_forgets_the_subscriber(hub: Hub) -> None:
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed")
        await subscriber.subscribe("drop")
        assert hub._backend_channels == {"feed", "drop"}
        await subscriber.unsubscribe("drop")
        assert hub._backend_channels == {"feed"}
    assert hub._backend_channels == set()
    assert hub._local == {}
    assert hub._subscribers == set()
    assert subscriber.outbox.closed is CloseReason.CLIENT_GONE


async def test_draining_closes_every_subscriber_for_shutdown(hub: Hub) -> None:
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed")
        waiting = asyncio.ensure_future(subscriber.outbox.get())
        await asyncio.sleep(0)
        callbacks = list(lifecycle._on_draining)
        assert callbacks, "the hub hooks into the process's draining"
        for callback in callbacks:
            callback()
        with pytest.raises(Closed) as closed:
            await asyncio.wait_for(waiting, 1)
        assert closed.value.reason is CloseReason.SHUTDOWN


async def test_closing_the_hub_unhooks_it_from_draining() -> None:
    before = len(lifecycle._on_draining)
    hub = Hub(metrics=RealtimeMetrics(CollectorRegistry()))
    await hub.open()
    assert len(lifecycle._on_draining) == before + 1
    await hub.close()
    assert len(lifecycle._on_draining) == before


async def test_policies_match_patterns_in_order_and_fall_back_to_the_default() -> None:
    hub = Hub(policies=POLICIES, default_policy=ChannelPolicy(history=7))
    assert hub.policy("games:mlb").overflow is Overflow.LATEST_ONLY
    assert hub.policy("feed").max_lag == 5
    assert hub.policy("elsewhere").history == 7
    with pytest.raises(ValueError, match="max_lag"):
        ChannelPolicy(max_lag=0)


async def test_a_replay_longer_than_the_queue_bound_is_a_resync(hub: Hub) -> None:
    # feed keeps 10 messages but queues at most 5 per subscriber: replaying 8 would
    # disconnect the client at once, and it would reconnect into the same gap.
    first = await hub.publish("feed", 0)
    sent = [await hub.publish("feed", n) for n in range(1, 9)]
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed", first.id)
        assert await drain(subscriber) == [Resync("feed", sent[-1].id)]
        assert subscriber.outbox.closed is None


async def test_a_burst_past_the_bound_reaches_a_subscriber_whose_writer_keeps_up(
    hub: Hub,
) -> None:
    received: list[object] = []
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed")

        all_in = asyncio.Event()

        async def writer() -> None:
            with contextlib.suppress(Closed):
                while True:
                    received.extend(payloads(await subscriber.outbox.get()))
                    if len(received) >= 50:
                        all_in.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(writer())
            await asyncio.sleep(0)
            for n in range(50):  # ten times feed's max_lag, without the publisher sleeping
                await hub.publish("feed", n)
            await asyncio.wait_for(all_in.wait(), 1)
            subscriber.outbox.close(CloseReason.CLIENT_GONE)
    assert received == list(range(50))
    assert subscriber.outbox.closed is CloseReason.CLIENT_GONE, "never disconnected as slow"


async def test_writers_take_turns_so_one_publish_never_runs_every_writer_at_once(
    hub: Hub,
) -> None:
    """With 300 subscribers, their writers run at most WRITERS_PER_TURN per loop iteration."""
    turns_seen: list[int] = []
    iteration = 0
    all_in = asyncio.Event()

    async def count_iterations() -> None:
        nonlocal iteration
        while True:
            iteration += 1
            await asyncio.sleep(0)

    async def writer(subscriber: Subscriber) -> None:
        with contextlib.suppress(Closed):
            while True:
                await subscriber.outbox.get()
                turns_seen.append(iteration)
                if len(turns_seen) == 300:
                    all_in.set()

    async with contextlib.AsyncExitStack() as stack:
        subscribers = [await stack.enter_async_context(hub.connect()) for _ in range(300)]
        for subscriber in subscribers:
            await subscriber.subscribe("drop")
        async with asyncio.TaskGroup() as group:
            ticker = group.create_task(count_iterations())
            writers = [group.create_task(writer(s)) for s in subscribers]
            await asyncio.sleep(0)
            await hub.publish("drop", "hello")
            await asyncio.wait_for(all_in.wait(), 1)
            ticker.cancel()
            for task in writers:
                task.cancel()
    per_iteration = [turns_seen.count(n) for n in set(turns_seen)]
    assert max(per_iteration) <= WRITERS_PER_TURN
    assert len(per_iteration) >= 300 // WRITERS_PER_TURN


async def test_a_new_epoch_from_the_backend_tells_subscribers_to_resync(hub: Hub) -> None:
    async with hub.connect() as subscriber:
        await subscriber.subscribe("feed")
        await hub.publish("feed", "before")
        reborn = Message("feed", MessageId("new-epoch", 1), b'"after"')
        hub._deliver(reborn)
        before, resync, after = await drain(subscriber)
    assert payloads([before]) == ["before"]
    assert resync == Resync("feed", None)
    assert after is reborn


async def test_a_subscriber_that_arrives_while_draining_is_closed_at_once(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "is_draining", lambda: True)
    async with hub.connect() as subscriber:
        with pytest.raises(Closed) as closed:
            await drain(subscriber)
    assert closed.value.reason is CloseReason.SHUTDOWN


async def test_a_live_message_the_client_already_had_from_history_is_not_sent_twice() -> None:
    # With Redis, history can be ahead of this process's live delivery: a client resuming
    # from 5 may see 5 arrive live while its (empty) replay is read.
    policy = ChannelPolicy()
    late = Message("feed", MessageId("e", 5), b"5")
    for after, expected in ((MessageId("e", 5), []), (MessageId("e", 4), [late])):
        outbox = Outbox()
        outbox.hold("feed")
        outbox.put(late, policy)
        outbox.release("feed", [], policy, after=after)
        outbox.close(CloseReason.DONE)
        assert [item async for item in _drained(outbox)] == expected


async def _drained(outbox: Outbox) -> AsyncIterator[Message | Resync | Notice]:
    with contextlib.suppress(Closed):
        while True:
            for item in await outbox.get():
                yield item
