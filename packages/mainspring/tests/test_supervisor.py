"""The supervisor: isolation, restarts with backoff, failure, gating and bounded shutdown."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict
from structlog.testing import capture_logs

from mainspring import (
    Backoff,
    MainspringSettings,
    ManualClock,
    RestartPolicy,
    Runtime,
    Service,
    lifecycle,
    loop,
    setting,
)
from mainspring.clock import settle
from mainspring.resources.base import Resource


def runtime(clock: ManualClock, fatal: list[str] | None = None, timeout: float = 10) -> Runtime:
    return Runtime(
        settings=MainspringSettings(shutdown_timeout=timeout),
        clock=clock,
        on_fatal=(fatal if fatal is not None else []).append,
        rng=random.Random(3),
    )


class Crasher(Service):
    """Runs for `lifetime` seconds of clock time, then raises."""

    lifetime = 0.0
    starts = 0

    async def run(self) -> None:
        type(self).starts += 1
        if self.lifetime:
            await self.sleep(self.lifetime)
        raise RuntimeError("boom")


class Steady(Service):
    @loop(every=1)
    async def tick(self) -> None:
        pass


async def test_a_crash_restarts_with_backoff_and_the_others_keep_running(
    clock: ManualClock,
) -> None:
    class Once(Steady):
        starts = 0

        async def on_start(self) -> None:
            type(self).starts += 1
            if self.starts == 1:
                raise RuntimeError("boom")

    async with runtime(clock) as rt:
        crashing = rt.supervise(Once, restart=RestartPolicy(backoff=Backoff(initial=10, cap=10)))
        steady = rt.supervise(Steady())
        await clock.advance(0)
        assert crashing.state.value == "backoff"
        assert crashing.crashes == 1
        assert crashing.next_restart_at is not None
        assert 0 <= crashing.next_restart_at - clock.time() <= 10
        assert crashing.last_error is not None
        assert crashing.last_error.type == "RuntimeError"
        await clock.advance(10)
        assert Once.starts == 2
        assert crashing.restarts == 1
        assert crashing.state.value == "running"
        assert steady.state.value == "running"
        assert steady.loops["tick"].ticks == 11


async def test_too_many_crashes_in_the_window_fail_the_service(clock: ManualClock) -> None:
    class Always(Crasher):
        starts = 0

    policy = RestartPolicy(backoff=Backoff(initial=1, cap=1), max_crashes=3, window=60)
    async with runtime(clock) as rt:
        status = rt.supervise(Always, restart=policy)
        steady = rt.supervise(Steady())
        for _ in range(10):
            await clock.advance(1)
        assert status.state.value == "failed"
        assert Always.starts == 4
        assert status.reason == "crashed more than 3 times in 60s"
        ready, body = await rt.readiness()
        assert ready
        assert body["status"] == "degraded"
        assert body["failed_services"] == ["Always"]
        assert steady.state.value == "running"


async def test_stable_run_resets_backoff_and_old_crashes_leave_the_window(
    clock: ManualClock,
) -> None:
    class LongLived(Crasher):
        lifetime = 120.0
        starts = 0

    policy = RestartPolicy(backoff=Backoff(initial=1, cap=1), max_crashes=2, window=100)
    async with runtime(clock) as rt:
        status = rt.supervise(LongLived, restart=policy)
        for _ in range(10):
            await clock.advance(121)
        assert status.state.value != "failed"
        assert status.crashes >= 8


async def test_a_failed_critical_service_asks_the_process_to_exit(clock: ManualClock) -> None:
    class Doomed(Crasher):
        starts = 0

    fatal: list[str] = []
    async with runtime(clock, fatal) as rt:
        rt.supervise(Doomed, restart="never", critical=True)
        await clock.advance(0)
    assert fatal == ["critical service 'Doomed' failed: crashed and its restart policy is 'never'"]
    assert rt.fatal == fatal[0]


async def test_init_and_on_start_failures_are_crashes_not_app_errors(clock: ManualClock) -> None:
    class BadInit(Service):
        def __init__(self) -> None:
            raise ValueError("missing API key")

    class BadStart(Steady):
        async def on_start(self) -> None:
            raise ConnectionError("upstream down")

    async with runtime(clock) as rt:
        init = rt.supervise(BadInit, restart="never")
        start = rt.supervise(BadStart(), restart="never")
        await clock.advance(0)
        assert init.state.value == "failed"
        assert init.last_error is not None
        assert init.last_error.message == "missing API key"
        assert start.state.value == "failed"
        assert start.last_error is not None
        assert start.last_error.type == "ConnectionError"


async def test_restart_always_restarts_after_a_clean_return(clock: ManualClock) -> None:
    class Batch(Service):
        runs = 0

        async def run(self) -> None:
            type(self).runs += 1

    policy = RestartPolicy(mode="always", backoff=Backoff(initial=2, cap=2))
    async with runtime(clock) as rt:
        always = rt.supervise(Batch, restart=policy)
        await clock.advance(10)
        assert Batch.runs >= 5
        assert always.crashes == 0
    Batch.runs = 0
    async with runtime(clock) as rt:
        once = rt.supervise(Batch)
        await clock.advance(10)
        assert Batch.runs == 1
        assert once.state.value == "stopped"
        assert once.reason == "run() returned"


def test_unknown_restart_policy_is_refused(clock: ManualClock) -> None:
    rt = runtime(clock)
    with pytest.raises(ValueError, match="'on-failure', 'always' or 'never'"):
        rt.supervise(Steady(), restart="sometimes")  # type: ignore[arg-type]


async def test_disabled_services_say_why_once(clock: ManualClock, monkeypatch) -> None:
    class AppSettings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="")
        nba_auto_import_enabled: bool = False

    monkeypatch.delenv("NBA_AUTO_IMPORT_ENABLED", raising=False)
    settings = AppSettings()
    with capture_logs() as logs:
        async with runtime(clock) as rt:
            gated = rt.supervise(
                Steady(), name="nba", enabled=setting(settings, "nba_auto_import_enabled")
            )
            plain = rt.supervise(Steady(), name="plain", enabled=None)
            explained = rt.supervise(Steady(), name="rpc", enabled="", reason="no RPC URL")
            await clock.advance(5)
            ready, _ = await rt.readiness()
    assert gated.state.value == "disabled"
    assert gated.reason == "NBA_AUTO_IMPORT_ENABLED is not set"
    assert plain.reason == "disabled (enabled=None)"
    assert explained.reason == "no RPC URL"
    assert ready
    assert [e["service"] for e in logs if e["event"] == "service disabled"] == [
        "nba",
        "plain",
        "rpc",
    ]


async def test_start_delay_staggers_services(clock: ManualClock) -> None:
    first, second = Steady(), Steady()
    async with runtime(clock) as rt:
        a = rt.supervise(first, name="nba")
        b = rt.supervise(second, name="mlb", start_delay=5)
        await clock.advance(4)
        assert a.state.value == "running"
        assert b.state.value == "stopped"
        assert b.reason == "starts after a delay of 5s"
        await clock.advance(1)
        assert b.state.value == "running"


async def test_readiness_waits_for_first_start_then_flips_on_shutdown(clock: ManualClock) -> None:
    class Warming(Steady):
        async def on_start(self) -> None:
            await self.sleep(30)

    async with runtime(clock) as rt:
        rt.supervise(Warming())
        await clock.advance(0)
        ready, body = await rt.readiness()
        assert not ready
        assert body == {"status": "starting", "checks": {}, "starting": ["Warming"]}
        await clock.advance(30)
        assert (await rt.readiness())[0]
        stopping = asyncio.ensure_future(rt.shutdown())
        await settle()
        assert await rt.readiness() == (False, {"status": "stopping"})
        await stopping


async def test_duplicate_names_are_refused(clock: ManualClock) -> None:
    async with runtime(clock) as rt:
        rt.supervise(Steady())
        with pytest.raises(ValueError, match="already supervised"):
            rt.supervise(Steady())


class Stubborn(Service):
    """Ignores the stop signal; optionally swallows cancellation too."""

    def __init__(self, release: asyncio.Event, swallow_cancel: bool = False) -> None:
        self.release = release
        self.swallow_cancel = swallow_cancel
        self.cancelled = False

    async def run(self) -> None:
        while True:
            try:
                await self.release.wait()
                return
            except asyncio.CancelledError:
                self.cancelled = True
                if not self.swallow_cancel:
                    raise


@pytest.fixture
def forced_record() -> Iterator[None]:
    """The process-wide record of a forced stop, clear before and after the test."""
    lifecycle.forget_forced_stop()
    yield
    lifecycle.forget_forced_stop()


async def test_a_service_that_ignores_stop_is_cancelled_at_its_timeout(
    clock: ManualClock, forced_record: None
) -> None:
    release = asyncio.Event()
    stubborn = Stubborn(release)
    with capture_logs() as logs:
        rt = runtime(clock)
        async with rt:
            rt.supervise(stubborn, stop_timeout=3)
            rt.supervise(Steady())
            await clock.advance(0)
            exiting = asyncio.ensure_future(rt.__aexit__(None, None, None))
            await clock.advance(2.9)
            assert not lifecycle.stop_was_forced()
            assert not stubborn.cancelled
            await clock.advance(0.1)
            await exiting
            await rt.__aenter__()  # balance the manual exit; shutdown() is idempotent
    assert stubborn.cancelled
    assert clock.monotonic() == pytest.approx(3.0)
    warned = [e for e in logs if e["event"] == "service did not stop in time; cancelling"]
    assert [e["service"] for e in warned] == ["Stubborn"]
    # The runner then exits non-zero: the stop had to cancel something.
    stopped = next(e for e in logs if e["event"] == "runtime stopped")
    assert stopped["forced"] == ["service Stubborn was cancelled"]
    assert lifecycle.stop_was_forced()


async def test_a_task_that_survives_cancel_is_named_and_abandoned(clock: ManualClock) -> None:
    release = asyncio.Event()
    with capture_logs() as logs:
        rt = runtime(clock, timeout=4)
        await rt.__aenter__()
        rt.supervise(Stubborn(release, swallow_cancel=True), name="zombie", stop_timeout=30)
        await clock.advance(0)
        exiting = asyncio.ensure_future(rt.shutdown())
        await clock.advance(10)
        await exiting
    assert clock.monotonic() == 10.0
    abandoned = [e for e in logs if e["event"] == "services would not die; abandoning them"]
    assert abandoned[0]["services"] == ["zombie"]
    stopped = [e for e in logs if e["event"] == "runtime stopped"]
    assert stopped[0]["abandoned"] == ["zombie"]
    release.set()
    await settle()


class Tracked(Resource):
    def __init__(self, name: str, journal: list[str], hang: bool = False, fail: bool = False):
        self.name = name
        self.journal = journal
        self.hang = hang
        self.fail = fail

    async def open(self) -> None:
        self.journal.append(f"open {self.name}")

    async def close(self) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise OSError("socket already gone")
        self.journal.append(f"close {self.name}")

    async def check(self) -> None:
        pass


async def test_resources_close_in_reverse_order_bounded_and_isolated(clock: ManualClock) -> None:
    journal: list[str] = []
    with capture_logs() as logs:
        rt = runtime(clock)
        await rt.__aenter__()
        await rt.open(Tracked("db", journal))
        await rt.open(Tracked("cache", journal, hang=True), close_timeout=2)
        await rt.open(Tracked("http", journal, fail=True))
        await rt.open(Tracked("queue", journal))
        exiting = asyncio.ensure_future(rt.shutdown())
        await clock.advance(2)
        await exiting
    assert journal == [
        "open db",
        "open cache",
        "open http",
        "open queue",
        "close queue",
        "close db",
    ]
    assert {e["resource"] for e in logs if e["event"] == "close timed out"} == {"cache"}
    assert {e["resource"] for e in logs if e["event"] == "close failed"} == {"http"}
    states = {r.name: r.state for r in rt.resources}
    assert states == {"db": "closed", "cache": "failed", "http": "failed", "queue": "closed"}
    stopped = next(e for e in logs if e["event"] == "runtime stopped")
    assert stopped["forced"] == ["resource cache's close timed out"]  # a failed close is not


async def test_a_critical_resource_that_fails_to_open_fails_startup(clock: ManualClock) -> None:
    class Broken(Tracked):
        async def open(self) -> None:
            raise ConnectionRefusedError("no database")

    journal: list[str] = []

    async def start() -> None:
        async with runtime(clock) as rt:
            await rt.open(Tracked("http", journal))
            await rt.open(Broken("db", journal))

    with pytest.raises(ConnectionRefusedError):
        await start()
    assert journal == ["open http", "close http"]


async def test_an_optional_resource_that_fails_degrades_readiness(clock: ManualClock) -> None:
    class Broken(Tracked):
        async def open(self) -> None:
            raise ConnectionRefusedError("no cache")

    async with runtime(clock) as rt:
        await rt.open(Broken("cache", []), critical=False)
        ready, body = await rt.readiness()
    assert ready
    assert body["status"] == "degraded"
    assert body["checks"] == {"cache": "ConnectionRefusedError: no cache"}


async def test_a_failing_critical_check_makes_the_process_unready(clock: ManualClock) -> None:
    class Sick(Tracked):
        async def check(self) -> None:
            raise OSError("connection reset")

    async with runtime(clock) as rt:
        await rt.open(Sick("db", []))
        ready, body = await rt.readiness()
    assert not ready
    assert body == {"status": "unavailable", "checks": {"db": "OSError: connection reset"}}


async def test_on_stop_failure_is_logged_and_does_not_block_shutdown(clock: ManualClock) -> None:
    class Messy(Steady):
        async def on_stop(self) -> None:
            raise RuntimeError("could not flush")

    with capture_logs() as logs:
        async with runtime(clock) as rt:
            status = rt.supervise(Messy())
            await clock.advance(0)
    assert status.state.value == "stopped"
    assert any(e["event"] == "service on_stop failed" for e in logs)


async def test_a_delayed_service_never_makes_a_ready_process_unready(clock: ManualClock) -> None:
    class SlowStart(Steady):
        async def on_start(self) -> None:
            await self.sleep(30)

    async with runtime(clock) as rt:
        rt.supervise(SlowStart(), start_delay=5)
        await clock.advance(0)
        assert (await rt.readiness())[0]
        await clock.advance(6)
        assert rt.supervisor.statuses()[0].state.value == "starting"
        assert (await rt.readiness())[0]


async def test_on_stop_can_sleep_on_the_clock_to_drain(clock: ManualClock) -> None:
    """The stop flag is set before on_stop runs; its sleeps must still wait, not raise."""
    drained: list[float] = []

    class Draining(Steady):
        async def on_stop(self) -> None:
            await self.sleep(2)
            drained.append(clock.monotonic())

    with capture_logs() as logs:
        rt = runtime(clock)
        async with rt:
            status = rt.supervise(Draining(), stop_timeout=5)
            await clock.advance(0)
            exiting = asyncio.ensure_future(rt.__aexit__(None, None, None))
            await clock.advance(1.9)
            assert drained == []
            await clock.advance(0.1)
            await exiting
            await rt.__aenter__()  # balance the manual exit; shutdown() is idempotent
    assert drained == [pytest.approx(2.0)]
    assert status.state.value == "stopped"
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
