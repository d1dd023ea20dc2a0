"""Both clocks: a wait whose wake event is set already still yields to the event loop, so a
loop of such waits can never starve the rest of the process."""

from __future__ import annotations

import asyncio

import pytest

from mainspring import Clock, ManualClock, SystemClock


@pytest.fixture(params=["manual", "system"])
def any_clock(request: pytest.FixtureRequest) -> Clock:
    return ManualClock() if request.param == "manual" else SystemClock()


async def test_a_wait_that_was_woken_already_returns_at_once_but_yields(any_clock: Clock) -> None:
    wake = asyncio.Event()
    wake.set()
    others: list[str] = []

    async def other() -> None:
        others.append("ran")

    task = asyncio.ensure_future(other())
    assert await any_clock.sleep_until(any_clock.monotonic() + 900, wake) is True
    assert others == ["ran"]
    await task
