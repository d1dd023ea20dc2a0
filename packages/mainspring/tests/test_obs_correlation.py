"""Request ids end to end: a real uvicorn process, real HTTP and WebSocket clients."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sample_apps.obs_server import ServedApp
from starlette.types import Message, Receive, Scope, Send
from structlog.contextvars import get_contextvars, merge_contextvars
from structlog.testing import capture_logs
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mainspring.observability.context import bind_request, current_request_id, valid_request_id
from mainspring.observability.errors import install_error_handlers
from mainspring.observability.middleware import RequestContextMiddleware
from mainspring.resources.http import HttpClient

ACCESS = "mainspring.access"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    app = ServedApp("tests.sample_apps.obs_app:app", tmp_path_factory.mktemp("obs") / "app.log")
    try:
        yield app
    finally:
        app.stop()


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what was recorded, not stderr."""


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A second local HTTP server that records the headers of each request it gets."""
    seen: list[dict[str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_an_incoming_request_id_comes_back_and_tags_every_line(served: ServedApp) -> None:
    response = httpx.get(f"{served.url}/items/7", headers={"X-Request-ID": "req-7.a_B"})

    assert response.headers["x-request-id"] == "req-7.a_B"
    served.access_line("req-7.a_B")
    events = [line["event"] for line in served.lines_for("req-7.a_B")]
    assert events == ["item read", "http request"]


def test_a_request_without_an_id_gets_a_fresh_one(served: ServedApp) -> None:
    first = httpx.get(f"{served.url}/items/1").headers["x-request-id"]
    second = httpx.get(f"{served.url}/items/1").headers["x-request-id"]

    assert valid_request_id(first)
    assert first != second
    assert served.access_line(first)["status"] == 200


@pytest.mark.parametrize(
    "bad_id",
    ["x" * 129, "has space", "semi;colon", "quote'", "slash/x", "tab\tx"],
)
def test_an_invalid_incoming_id_is_replaced(served: ServedApp, bad_id: str) -> None:
    response = httpx.get(f"{served.url}/items/1", headers={"X-Request-ID": bad_id})

    replaced = response.headers["x-request-id"]
    assert replaced != bad_id
    assert valid_request_id(replaced)
    assert served.access_line(replaced)["route"] == "/items/{item_id}"
    assert bad_id not in served.output()


def test_the_longest_valid_id_is_kept(served: ServedApp) -> None:
    longest = "a" * 128
    response = httpx.get(f"{served.url}/items/1", headers={"X-Request-ID": longest})
    assert response.headers["x-request-id"] == longest


def test_a_websocket_gets_the_id_on_accept_and_one_line_at_close(served: ServedApp) -> None:
    ws_url = f"ws://127.0.0.1:{served.port}/ws/lobby"
    with connect(ws_url, additional_headers={"X-Request-ID": "ws-1"}) as ws:
        assert ws.response is not None
        assert ws.response.headers["X-Request-ID"] == "ws-1"
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send("again")
        assert ws.recv(timeout=10) == "again"

    line = served.access_line("ws-1")
    assert line["event"] == "websocket session"
    assert line["route"] == "/ws/{room}"
    assert line["close_code"] == 1000
    assert line["messages_in"] == 2
    assert line["messages_out"] == 2
    assert line["client"] == "127.0.0.1"
    assert isinstance(line["duration_ms"], float)
    handler_lines = [x for x in served.lines_for("ws-1") if x["event"] == "ws message"]
    assert len(handler_lines) == 2


def test_a_websocket_without_an_id_gets_one(served: ServedApp) -> None:
    with connect(f"ws://127.0.0.1:{served.port}/ws/x") as ws:
        assert ws.response is not None
        request_id = ws.response.headers["X-Request-ID"]
    assert valid_request_id(request_id)
    assert served.access_line(request_id)["route"] == "/ws/{room}"


def test_a_crashing_websocket_is_closed_1011_and_logged_once(served: ServedApp) -> None:
    ws_url = f"ws://127.0.0.1:{served.port}/ws-crash"
    with connect(ws_url, additional_headers={"X-Request-ID": "wsc-1"}) as ws:
        ws.send("trigger")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011

    line = served.access_line("wsc-1")
    assert (line["close_code"], line["messages_in"]) == (1011, 1)
    errors = [x for x in served.lines_for("wsc-1") if "exception" in x]
    assert len(errors) == 1
    assert errors[0]["route"] == "/ws-crash"
    assert served.output().count("RuntimeError: socket handler bug") == 1


def test_a_500_carries_the_id_and_logs_one_traceback(served: ServedApp) -> None:
    response = httpx.get(f"{served.url}/boom", headers={"X-Request-ID": "boom-1"})

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    assert response.json() == {"error": "internal_error", "request_id": "boom-1"}
    assert "kaboom" not in response.text
    served.access_line("boom-1")
    lines = served.lines_for("boom-1")
    with_traceback = [line for line in lines if "exception" in line]
    assert len(with_traceback) == 1
    assert with_traceback[0]["level"] == "error"
    assert with_traceback[0]["route"] == "/boom"
    assert "RuntimeError: kaboom" in with_traceback[0]["exception"]
    assert served.output().count("RuntimeError: kaboom") == 1, "logged twice (by uvicorn?)"
    (access,) = [line for line in lines if line["logger"] == ACCESS]
    assert (access["status"], access["error"]) == (500, "RuntimeError")


def test_a_failure_after_the_headers_went_out_is_logged_once(served: ServedApp) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{served.url}/stream-fail", headers={"X-Request-ID": "mid-1"})

    line = served.access_line("mid-1")
    assert (line["status"], line["bytes"]) == (200, len(b"first chunk"))
    assert line["error"] == "ValueError"
    errors = [x for x in served.lines_for("mid-1") if "exception" in x]
    assert len(errors) == 1
    assert "ValueError: mid-stream" in errors[0]["exception"]
    assert served.output().count("ValueError: mid-stream") == 1


def test_a_422_keeps_fastapis_shape_and_adds_the_id(served: ServedApp) -> None:
    response = httpx.post(
        f"{served.url}/login", json={"username": "bob"}, headers={"X-Request-ID": "bad-1"}
    )

    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"detail", "request_id"}
    assert body["request_id"] == "bad-1"
    assert body["detail"][0]["loc"] == ["body", "password"]
    assert body["detail"][0]["type"] == "missing"
    assert served.access_line("bad-1")["status"] == 422


def test_an_outbound_call_carries_the_request_id(
    served: ServedApp, upstream: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = upstream
    response = httpx.get(
        f"{served.url}/call", params={"url": url}, headers={"X-Request-ID": "out-1"}
    )

    assert response.json() == {"status": 204}
    assert len(seen) == 1
    headers = {name.lower(): value for name, value in seen[0].items()}
    assert headers["x-request-id"] == "out-1"


def test_the_access_line_names_the_route_template_not_the_path(served: ServedApp) -> None:
    response = httpx.get(
        f"{served.url}/items/4242",
        headers={"X-Request-ID": "acc-1", "X-Forwarded-For": "203.0.113.9"},
    )

    line = served.access_line("acc-1")
    assert line["logger"] == ACCESS
    assert line["level"] == "info"
    assert line["event"] == "http request"
    assert line["method"] == "GET"
    assert line["route"] == "/items/{item_id}"
    assert line["status"] == 200
    assert line["bytes"] == len(response.content)
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1", "X-Forwarded-For from an untrusted peer was used"
    assert line["timestamp"].endswith("Z")
    assert "4242" not in json.dumps(line)


def test_an_unmatched_path_is_logged_as_unmatched(served: ServedApp) -> None:
    response = httpx.get(f"{served.url}/scan/me/123", headers={"X-Request-ID": "nf-1"})

    assert response.status_code == 404
    line = served.access_line("nf-1")
    assert line["route"] == "<unmatched>"
    assert line["status"] == 404
    assert "/scan/me" not in served.output()


def test_a_subject_set_by_the_handler_is_on_the_access_line(served: ServedApp) -> None:
    httpx.post(
        f"{served.url}/login",
        json={"username": "alice", "password": "pw-alice"},
        headers={"X-Request-ID": "sub-1"},
    )
    assert served.access_line("sub-1")["subject"] == "alice"


def test_uvicorns_access_log_is_replaced_not_duplicated(served: ServedApp) -> None:
    """The app runs without --no-access-log: configure_logging silences uvicorn's."""
    httpx.get(f"{served.url}/items/1", headers={"X-Request-ID": "dup-1"})

    served.access_line("dup-1")
    lines = served.lines()
    assert not [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert len([line for line in lines if line.get("request_id") == "dup-1"]) == 2


def test_stdlib_loggers_come_out_in_the_same_json_format(served: ServedApp) -> None:
    httpx.get(f"{served.url}/stdlib", headers={"X-Request-ID": "std-1"})

    served.access_line("std-1")
    (line,) = [x for x in served.lines_for("std-1") if x["logger"] == "uvicorn.error"]
    assert line["event"] == "stdlib says hello"
    assert line["level"] == "warning"
    assert line["timestamp"].endswith("Z")
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    # uvicorn's own startup lines, logged before any request, went the same way.
    startup = [x for x in served.lines() if x["event"] == "Application startup complete."]
    assert startup[0]["logger"] == "uvicorn.error"


# In-process: the middleware's choices that need a particular app or peer.


class RecordingMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def request_started(self, method: str) -> None:
        self.calls.append(("started", method))

    def request_finished(self, method: str, route: str, status: int, duration_s: float) -> None:
        assert duration_s >= 0
        self.calls.append(("finished", method, route, status))


def small_app() -> FastAPI:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"order_id": order_id}

    @app.get("/crash")
    async def crash() -> None:
        raise ValueError("boom")

    sub = FastAPI()

    @sub.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    app.mount("/v2", sub)
    return app


def client_for(app: Any, client: tuple[str, int] = ("127.0.0.1", 5000)) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def access_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] in ("http request", "websocket session")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.0.0.5", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.5", "198.51.100.1, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
        ("192.0.2.1", "203.0.113.9", "192.0.2.1"),
        ("10.0.0.5", None, "10.0.0.5"),
    ],
)
async def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(
    peer: str, forwarded: str | None, client: str
) -> None:
    app = RequestContextMiddleware(small_app(), trusted_proxies=["10.0.0.0/8"])
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    with capture_logs() as logs:
        async with client_for(app, (peer, 5000)) as http:
            await http.get("/orders/1", headers=headers)
    (line,) = access_lines(logs)
    assert line["client"] == client


async def test_metrics_hear_of_each_request_with_its_route_template() -> None:
    metrics = RecordingMetrics()
    app = RequestContextMiddleware(small_app(), metrics=metrics)
    async with client_for(app) as http:
        await http.get("/orders/5")
        await http.get("/v2/things/9")
        await http.get("/nowhere")
    assert metrics.calls == [
        ("started", "GET"),
        ("finished", "GET", "/orders/{order_id}", 200),
        ("started", "GET"),
        ("finished", "GET", "/v2/things/{thing_id}", 200),
        ("started", "GET"),
        ("finished", "GET", "<unmatched>", 404),
    ]


async def test_wrapped_outside_starlettes_error_middleware_the_500_is_json() -> None:
    """Wrapping the app puts ServerErrorMiddleware inside us; the handler keeps it JSON."""
    inner = small_app()
    install_error_handlers(inner)
    metrics = RecordingMetrics()
    app = RequestContextMiddleware(inner, metrics=metrics)
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with client_for(app) as http:
            response = await http.get("/crash", headers={"X-Request-ID": "wrap-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "wrap-1"
    assert response.json() == {"error": "internal_error", "request_id": "wrap-1"}
    errors = [entry for entry in logs if entry.get("exc_info")]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "wrap-1"
    assert metrics.calls[-1] == ("finished", "GET", "/crash", 500)


async def test_the_request_id_is_not_left_bound_after_the_request() -> None:
    async with client_for(RequestContextMiddleware(small_app())) as http:
        await http.get("/orders/1")
    assert current_request_id() is None
    assert "request_id" not in get_contextvars()


async def test_lifespan_passes_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await RequestContextMiddleware(app)({"type": "lifespan"}, _never_receive, _never_send)
    assert seen == ["lifespan"]


async def _never_receive() -> Message:
    raise AssertionError("not expected")


async def _never_send(message: Message) -> None:
    raise AssertionError("not expected")


async def test_outbound_header_only_when_bound_and_not_set_by_the_caller() -> None:
    seen: list[str | None] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        return httpx.Response(204)

    http = HttpClient(transport=httpx.MockTransport(record))
    await http.open()
    try:
        await http.client.get("http://upstream/")
        binding = bind_request("out-2")
        await http.client.get("http://upstream/")
        await http.client.get("http://upstream/", headers={"X-Request-ID": "callers"})
        binding.reset()
    finally:
        await http.close()
    assert seen == [None, "out-2", "callers"]
