"""Who may use the admin surface (/debug/status, /metrics): with no admin token, only a
loopback request that carries no proxy header of any kind; with a token, whoever sends it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from mainspring import MainspringSettings, Runtime

PROXY_HEADER_SAMPLES = {
    "X-Forwarded-For": "203.0.113.9",
    "Forwarded": "for=203.0.113.9",
    "X-Real-IP": "203.0.113.9",
    "True-Client-IP": "203.0.113.9",
    "X-Forwarded-Host": "admin.example",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Server": "edge-1",
    "X-Forwarded-Prefix": "/app",
    "X-Client-IP": "203.0.113.9",
    "Client-IP": "203.0.113.9",
    "CF-Connecting-IP": "203.0.113.9",
    "CF-Ray": "8a1b2c3d4e5f-AMS",
    "Fastly-Client-IP": "203.0.113.9",
    "Akamai-Client-IP": "203.0.113.9",
    "X-Cluster-Client-IP": "203.0.113.9",
    "X-ProxyUser-IP": "203.0.113.9",
    "X-Original-Forwarded-For": "203.0.113.9",
    "X-Envoy-External-Address": "203.0.113.9",
    "X-Azure-ClientIP": "203.0.113.9",
    "X-Amzn-Trace-Id": "Root=1-67891233-abcdef012345678912345678",
    "Via": "1.1 nginx",
}
"""One of each header a proxy, load balancer or CDN in front of the app may add."""

ADMIN_PATHS = ("/debug/status", "/metrics")
TOKEN = "s3cret-admin"


def admin_app(token: str | None) -> FastAPI:
    settings = MainspringSettings(admin_token=SecretStr(token) if token else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(app, settings):
            yield

    return FastAPI(title="admin-trust", lifespan=lifespan)


@pytest.fixture(scope="module")
def open_to_loopback() -> Iterator[TestClient]:
    with TestClient(admin_app(None), client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture(scope="module")
def with_token() -> Iterator[TestClient]:
    with TestClient(admin_app(TOKEN), client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1"])
def test_without_a_token_a_direct_loopback_request_is_trusted(host: str) -> None:
    with TestClient(admin_app(None), client=(host, 50000)) as client:
        for path in ADMIN_PATHS:
            assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("header", sorted(PROXY_HEADER_SAMPLES))
def test_without_a_token_any_proxy_header_refuses_a_loopback_request(
    open_to_loopback: TestClient, header: str
) -> None:
    for path in ADMIN_PATHS:
        answer = open_to_loopback.get(path, headers={header: PROXY_HEADER_SAMPLES[header]})
        assert answer.status_code == 403, path
        assert "MAINSPRING_ADMIN_TOKEN" in answer.json()["detail"]


@pytest.mark.parametrize("header", sorted(PROXY_HEADER_SAMPLES))
def test_with_a_token_a_proxied_request_needs_it_and_is_served_with_it(
    with_token: TestClient, header: str
) -> None:
    proxied = {header: PROXY_HEADER_SAMPLES[header]}
    for path in ADMIN_PATHS:
        assert with_token.get(path, headers=proxied).status_code == 401, path
        authorized = {**proxied, "Authorization": f"Bearer {TOKEN}"}
        assert with_token.get(path, headers=authorized).status_code == 200, path


def test_ordinary_client_headers_do_not_count_as_a_proxy(open_to_loopback: TestClient) -> None:
    headers = {
        "User-Agent": "curl/8.5.0",
        "Accept": "application/json",
        "Accept-Encoding": "gzip",
        "Cookie": "session=1",
        "X-Request-ID": "abc",
        "Sec-Fetch-Mode": "navigate",
    }
    for path in ADMIN_PATHS:
        assert open_to_loopback.get(path, headers=headers).status_code == 200, path
