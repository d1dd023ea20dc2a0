"""/health, /ready, /debug/status and the typed dependencies, through a real ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from mainspring import MainspringSettings, Runtime, Service, loop, use
from mainspring.leases import lease_namespace
from mainspring.resources.base import Resource


class Pool(Resource):
    name = "pool"
    healthy = True

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.opened = False

    async def check(self) -> None:
        if not self.healthy:
            raise ConnectionError("pool exhausted")


class Poller(Service):
    name = "poller"

    def __init__(self) -> None:
        self.seen = 0

    @loop(every=3600)
    async def tick(self) -> None:
        self.seen += 1


def build_app(settings: MainspringSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(app, settings) as rt:
            await rt.open(Pool())
            rt.supervise(Poller())
            rt.supervise(Poller(), name="idle", enabled=False, reason="IDLE_URL is not set")
            yield

    app = FastAPI(title="probe", version="1.2.3", lifespan=lifespan)

    @app.get("/pool")
    async def pool(p: Annotated[Pool, Depends(use(Pool))]) -> dict[str, object]:
        return {"opened": p.opened, "kind": type(p).__name__}

    @app.get("/poller")
    async def poller(svc: Annotated[Poller, Depends(use(Poller, "poller"))]) -> dict[str, int]:
        return {"seen": svc.seen}

    @app.get("/idle")
    async def idle(svc: Annotated[Poller, Depends(use(Poller, "idle"))]) -> dict[str, int]:
        return {"seen": svc.seen}

    return app


def client_for(app: FastAPI, host: str = "127.0.0.1") -> TestClient:
    return TestClient(app, client=(host, 50000))


@pytest.fixture
def local() -> Iterator[TestClient]:
    with client_for(build_app(MainspringSettings())) as client:
        yield client


def test_health_and_ready(local: TestClient) -> None:
    assert local.get("/health").json() == {"status": "ok"}
    ready = local.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"pool": "ok"}}


def test_ready_is_503_when_a_critical_resource_fails_its_check(local: TestClient) -> None:
    runtime: Runtime = local.app.state.mainspring_runtime  # type: ignore[attr-defined]
    runtime.get(Pool).healthy = False
    ready = local.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"pool": "failing"}
    status = local.get("/debug/status").json()
    assert status["ready"]["checks"] == {"pool": "ConnectionError: pool exhausted"}


def test_status_lists_resources_and_services(local: TestClient) -> None:
    body = local.get("/debug/status").json()
    assert body["app"] == {
        "name": "probe",
        "version": "1.2.3",
        "lease_namespace": lease_namespace("probe", MainspringSettings()),
    }
    assert body["ready"]["ready"] is True
    assert body["resources"] == [{"name": "pool", "state": "open", "critical": True, "error": None}]
    services = {s["name"]: s for s in body["services"]}
    assert services["poller"]["state"] == "running"
    assert services["poller"]["loops"]["tick"]["ticks"] == 1
    assert services["poller"]["next_tick_at"] is not None
    assert services["idle"]["state"] == "disabled"
    assert services["idle"]["reason"] == "IDLE_URL is not set"
    assert body["uptime"] >= 0
    assert isinstance(body["pid"], int)


def test_status_without_a_token_refuses_other_hosts() -> None:
    with client_for(build_app(MainspringSettings()), host="203.0.113.9") as client:
        refused = client.get("/debug/status")
    assert refused.status_code == 403
    assert "MAINSPRING_ADMIN_TOKEN" in refused.json()["detail"]


def test_status_with_a_token_requires_it_from_everyone() -> None:
    settings = MainspringSettings(admin_token=SecretStr("s3cret-token"))
    with client_for(build_app(settings)) as client:
        missing = client.get("/debug/status")
        wrong = client.get("/debug/status", headers={"Authorization": "Bearer nope"})
        basic = client.get("/debug/status", headers={"Authorization": "Basic s3cret-token"})
        right = client.get("/debug/status", headers={"Authorization": "Bearer s3cret-token"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "the admin token is not valid"}
    assert basic.status_code == 401
    assert right.status_code == 200


def test_dependencies_reach_resources_and_services(local: TestClient) -> None:
    assert local.get("/pool").json() == {"opened": True, "kind": "Pool"}
    assert local.get("/poller").json() == {"seen": 1}
    idle = local.get("/idle")
    assert idle.status_code == 503
    assert idle.json() == {"detail": "service 'idle' is not running here (disabled)"}


def test_dependencies_can_be_overridden_in_tests() -> None:
    app = build_app(MainspringSettings())
    fake = Pool()
    fake.opened = False
    app.dependency_overrides[use(Pool)] = lambda: fake
    with client_for(app) as client:
        assert client.get("/pool").json() == {"opened": False, "kind": "Pool"}


def test_runtime_lookups_explain_what_is_missing(local: TestClient) -> None:
    runtime: Runtime = local.app.state.mainspring_runtime  # type: ignore[attr-defined]

    class Other(Resource):
        async def open(self) -> None: ...
        async def close(self) -> None: ...
        async def check(self) -> None: ...

    with pytest.raises(LookupError, match=r"no Other resource was opened with Runtime\.open"):
        runtime.get(Other)


def test_the_runtime_mounts_health_once_across_restarts() -> None:
    app = build_app(MainspringSettings())
    with client_for(app) as client:
        client.get("/health")
    routes = len(app.routes)
    with client_for(app) as client:
        assert client.get("/ready").status_code == 200
    assert len(app.routes) == routes


def test_asking_for_a_service_that_was_never_supervised_is_a_lookup_error(
    local: TestClient,
) -> None:
    runtime: Runtime = local.app.state.mainspring_runtime  # type: ignore[attr-defined]

    class Unrelated(Service):
        async def run(self) -> None: ...

    with pytest.raises(LookupError, match="no Unrelated service is supervised"):
        runtime.get(Unrelated)
    assert isinstance(runtime.get(Poller, "poller"), Poller)
