"""Bad input against an instrumented app: error bodies that always encode, capped 422s,
the request-body limit, admin checks before the body, and an OpenAPI that lists it all."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field, SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mainspring import MainspringSettings, Runtime
from mainspring.health import AdminRoute, admin_only
from mainspring.observability import body_limit, instrument
from mainspring.observability.errors import ECHO_LIMIT, ERRORS_LIMIT
from mainspring.resources import DbSession
from mainspring.settings import ConfigError

LIMIT = 1000
TOKEN = "s3cret-token"


class Item(BaseModel):
    name: str = Field(max_length=8)
    count: int


def build_app(
    max_body_size: int | None = LIMIT, middleware: type[BodyReader] | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(app, MainspringSettings(admin_token=SecretStr(TOKEN))):
            yield

    app = FastAPI(lifespan=lifespan)
    admin = APIRouter(prefix="/admin", route_class=AdminRoute)

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    @app.post("/counts")
    async def counts(values: list[int]) -> int:
        return sum(values)

    @app.post("/uploads")
    @body_limit(5 * LIMIT)
    async def upload(request: Request) -> int:
        return len(await request.body())

    @app.get("/items/{item_id}")
    async def read(item_id: int) -> Item:
        raise HTTPException(404, f"item {item_id} not found")

    @app.get("/rows")
    async def rows(session: DbSession) -> int:
        raise AssertionError("not called: the OpenAPI test only reads the schema")

    @app.get("/guarded", dependencies=[Depends(admin_only)])
    async def guarded() -> str:
        return "ok"

    @admin.post("/items")
    async def admin_create(item: Item) -> Item:
        return item

    app.include_router(admin)
    if middleware is not None:
        app.add_middleware(middleware)
    return instrument(app, max_body_size=max_body_size)


@asynccontextmanager
async def client_for(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = build_app()
    async with app.router.lifespan_context(app), client_for(app) as client:
        yield client


class Chunks:
    """A request body of `count` chunks that records how many were taken."""

    def __init__(self, count: int, size: int = 100) -> None:
        self.count = count
        self.size = size
        self.taken = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.taken += 1
            yield b"x" * self.size


async def test_a_lone_surrogate_in_a_json_body_gets_an_encodable_422(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"name": "\\ud800 and much more", "count": 1}'  # valid JSON, not valid Unicode
    response = await client.post(
        "/items", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert error["input"] == "\ufffd and much more"


async def test_nan_in_a_json_body_gets_a_422(client: httpx.AsyncClient) -> None:
    body = b'{"name": NaN, "count": 1}'  # Python's JSON reader takes it; JSON has no NaN
    response = await client.post(
        "/items", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["input"] == "nan"


async def test_a_body_that_is_not_utf8_text_gets_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/items", content=b"\xff\xfe\x00", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["input"] == "\ufffd\ufffd\x00"


async def test_a_422_echoes_a_few_hundred_characters_of_each_value() -> None:
    app = build_app(max_body_size=2_000_000)
    async with app.router.lifespan_context(app), client_for(app) as roomy:
        huge = "x" * 900_000
        response = await roomy.post("/items", json={"name": huge, "count": {"n": huge}})
    assert response.status_code == 422
    assert len(response.content) < 2048
    name, count = response.json()["detail"]
    assert name["input"] == "x" * ECHO_LIMIT + "…"
    assert name["truncated"] is True
    assert count["input"].startswith('{"n": "xxx')
    assert count["truncated"] is True


async def test_a_422_lists_at_most_twenty_errors(client: httpx.AsyncClient) -> None:
    response = await client.post("/counts", json=["no"] * 100)
    assert response.status_code == 422
    assert "connection" not in response.headers  # the body was read: the connection stays
    body = response.json()
    assert len(body["detail"]) == ERRORS_LIMIT
    assert body["errors_omitted"] == 100 - ERRORS_LIMIT


async def test_an_http_error_carries_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/items/7", headers={"X-Request-ID": "id-7"})
    assert response.status_code == 404
    assert response.json() == {"detail": "item 7 not found", "request_id": "id-7"}


async def test_a_declared_body_over_the_limit_is_413_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    body = Chunks(count=50)
    response = await client.post(
        "/items",
        content=body,
        headers={"Content-Length": str(50 * 100), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == f"the request body is larger than {LIMIT} bytes"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert response.headers["connection"] == "close"  # the client stops sending
    assert body.taken == 0


async def test_a_chunked_body_is_refused_once_it_grows_past_the_limit(
    client: httpx.AsyncClient,
) -> None:
    body = Chunks(count=10_000)
    response = await client.post(
        "/items", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert body.taken == LIMIT // body.size + 1


async def test_one_endpoint_can_have_its_own_limit(client: httpx.AsyncClient) -> None:
    assert (await client.post("/uploads", content=b"x" * 3 * LIMIT)).json() == 3 * LIMIT
    assert (await client.post("/uploads", content=b"x" * 6 * LIMIT)).status_code == 413


async def test_a_body_read_by_a_middleware_is_refused_as_json_too() -> None:
    app = build_app(middleware=BodyReader)
    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.post("/items", content=Chunks(count=50))
    assert response.status_code == 413
    assert response.json()["detail"] == f"the request body is larger than {LIMIT} bytes"


class BodyReader:
    """A user middleware that reads the whole body before the app (as some auth does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while not messages or messages[-1].get("more_body"):
            messages.append(await receive())

        async def replay() -> Message:
            return messages.pop(0)

        await self.app(scope, replay, send)


async def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINSPRING_MAX_BODY_SIZE", "10")
    app = build_app(max_body_size=None)
    async with app.router.lifespan_context(app), client_for(app) as client:
        response = await client.post("/items", json={"name": "a", "count": 1})
    assert response.status_code == 413
    monkeypatch.setenv("MAINSPRING_MAX_BODY_SIZE", "1 MB")
    with pytest.raises(ConfigError, match="MAINSPRING_MAX_BODY_SIZE"):
        build_app(max_body_size=None)


async def test_an_admin_route_answers_401_without_reading_the_body(
    client: httpx.AsyncClient,
) -> None:
    body = Chunks(count=5)
    response = await client.post(
        "/admin/items", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert response.headers["connection"] == "close"
    assert body.taken == 0
    ok = await client.post(
        "/admin/items", json={"name": "a", "count": 1}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert ok.status_code == 200


def test_openapi_lists_the_errors_each_operation_answers() -> None:
    schema = build_app().openapi()
    paths = schema["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"400", "413", "422"} <= statuses("/items", "post")
    assert "413" not in statuses("/items/{item_id}", "get")
    assert "503" in statuses("/rows", "get")
    assert {"401", "403"} <= statuses("/guarded", "get")
    assert {"400", "401", "403", "413", "422"} <= statuses("/admin/items", "post")
    error = paths["/admin/items"]["post"]["responses"]["413"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {
        "detail",
        "request_id",
    }
    json.dumps(schema)
