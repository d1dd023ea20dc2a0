"""Observability wired into the runtime: tick log context, runtime metrics, instrument()."""

from __future__ import annotations

import io
import json
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from mainspring import MainspringSettings, ManualClock, Runtime, Service, loop
from mainspring.observability import configure_logging, instrument

log = structlog.get_logger("tests.ticks")


def runtime(clock: ManualClock) -> Runtime:
    return Runtime(
        settings=MainspringSettings(), clock=clock, on_fatal=lambda m: None, rng=random.Random(2)
    )


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_each_tick_logs_with_service_loop_and_its_own_tick_id(clock: ManualClock) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True, level="INFO")
    structlog.contextvars.bind_contextvars(request_id="from-the-lifespan")
    name = f"scores-{uuid.uuid4().hex[:6]}"

    class Scores(Service):
        calls = 0

        @loop(every=60)
        async def poll(self) -> None:
            type(self).calls += 1
            log.info("polled", call=self.calls)
            structlog.contextvars.bind_contextvars(leftover="must not reach the next tick")
            if self.calls == 2:
                raise ConnectionError("upstream reset")

    async with runtime(clock) as rt:
        rt.supervise(Scores(), name=name)
        await clock.advance(60)
    structlog.contextvars.clear_contextvars()

    ticks = [line for line in lines(stream) if line.get("service") == name and "tick_id" in line]
    polled = [line for line in ticks if line["event"] == "polled"]
    failed = [line for line in ticks if line["event"] == "tick failed"]
    assert [line["call"] for line in polled] == [1, 2]
    assert all(line["loop"] == "poll" for line in ticks)
    assert polled[0]["tick_id"] != polled[1]["tick_id"]
    assert failed[0]["tick_id"] == polled[1]["tick_id"]
    done = [line for line in ticks if line["event"] == "tick done"]
    assert [line["tick_id"] for line in done] == [polled[0]["tick_id"]]
    assert isinstance(done[0]["duration_ms"], float)
    assert "ConnectionError: upstream reset" in str(failed[0]["exception"])
    assert all("request_id" not in line and "leftover" not in line for line in polled)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_ticks_states_and_restarts_are_counted(clock: ManualClock) -> None:
    name = f"metered-{uuid.uuid4().hex[:6]}"

    class Metered(Service):
        ticks = 0

        @loop(every=10)
        async def work(self) -> None:
            type(self).ticks += 1
            if self.ticks == 3:
                raise ValueError("bad payload")

    class Crashing(Service):
        async def run(self) -> None:
            raise RuntimeError("boom")

    async with runtime(clock) as rt:
        rt.supervise(Metered(), name=name)
        rt.supervise(Crashing, name=f"{name}-crash", restart="on-failure")
        await clock.advance(25)
        assert sample("mainspring_service_state", service=name, state="running") == 1
        assert sample("mainspring_service_state", service=name, state="starting") == 0
        restarts = sample("mainspring_service_restarts_total", service=f"{name}-crash")
        assert restarts >= 1
    labels = {"service": name, "loop": "work"}
    assert sample("mainspring_tick_duration_seconds_count", **labels) == 3
    assert sample("mainspring_tick_failures_total", **labels) == 1
    assert sample("mainspring_service_state", service=name, state="stopped") == 1


def test_instrument_gives_request_ids_access_lines_and_metrics() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, json=True, level="INFO")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(app, MainspringSettings()):
            yield

    app = instrument(FastAPI(title="instrumented", lifespan=lifespan))
    route = f"/items-{uuid.uuid4().hex[:6]}/{{item_id}}"

    @app.get(route)
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    path = route.replace("{item_id}", "7")
    with TestClient(app, client=("127.0.0.1", 5000)) as client:
        ok = client.get(path, headers={"X-Request-ID": "abc.123"})
        bad = client.get(route.replace("{item_id}", "seven"))
        exposition = client.get("/metrics").text
    assert ok.headers["x-request-id"] == "abc.123"
    assert bad.status_code == 422
    assert bad.json()["request_id"] == bad.headers["x-request-id"]
    access = [line for line in lines(stream) if line.get("route") == route]
    assert [(line["status"], line["method"]) for line in access] == [(200, "GET"), (422, "GET")]
    assert access[0]["request_id"] == "abc.123"
    assert f'route="{route}",status_class="2xx"' in exposition
