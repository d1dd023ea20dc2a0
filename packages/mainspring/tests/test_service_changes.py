"""Listeners of service state changes: told once per change of state or reason, isolated."""

from __future__ import annotations

import random

from structlog.testing import capture_logs

from mainspring import (
    Backoff,
    MainspringSettings,
    ManualClock,
    RestartPolicy,
    Runtime,
    Service,
    ServiceStatus,
    loop,
)


class Steady(Service):
    @loop(every=1)
    async def tick(self) -> None:
        pass


class CrashesOnce(Service):
    """Crashes in its first run; its second run returns."""

    runs = 0

    async def run(self) -> None:
        type(self).runs += 1
        if self.runs == 1:
            raise RuntimeError("boom")


async def test_listeners_hear_each_change_of_state_or_reason_once(clock: ManualClock) -> None:
    heard: list[tuple[str, str, str | None]] = []
    after_removal: list[tuple[str, str]] = []

    def listen(status: ServiceStatus) -> None:
        heard.append((status.name, status.state.value, status.reason))

    def broken(status: ServiceStatus) -> None:
        raise ValueError("listener bug")

    rt = Runtime(settings=MainspringSettings(), clock=clock, rng=random.Random(1))
    with capture_logs() as logs:
        async with rt:
            remove = rt.on_service_change(listen)
            rt.on_service_change(broken)
            rt.on_service_change(lambda s: after_removal.append((s.name, s.state.value)))
            rt.supervise(Steady(), name="off", enabled=False, reason="not today")
            rt.supervise(
                CrashesOnce, name="flaky", restart=RestartPolicy(backoff=Backoff(initial=2, cap=2))
            )
            rt.supervise(Steady(), name="late", start_delay=5)
            await clock.advance(0)
            await clock.advance(2)
            await clock.advance(5)
            assert rt.supervisor.statuses()[2].loops["tick"].ticks >= 1
            remove()
            heard_before_shutdown = list(heard)
    assert heard_before_shutdown == [
        ("off", "disabled", "not today"),
        ("flaky", "starting", None),
        ("late", "stopped", "starts after a delay of 5s"),
        ("flaky", "running", None),
        ("flaky", "backoff", None),
        ("flaky", "starting", None),
        ("flaky", "running", None),
        ("flaky", "stopped", "run() returned"),
        ("late", "starting", None),
        ("late", "running", None),
    ]
    assert heard == heard_before_shutdown  # removed: the shutdown was not heard
    assert after_removal[-2:] == [("late", "stopping"), ("late", "stopped")]
    failures = [e for e in logs if e["event"] == "service status listener failed"]
    assert len(failures) == len(after_removal)
    assert rt.supervisor.statuses()[1].state.value == "stopped"
