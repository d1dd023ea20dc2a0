"""After SIGTERM, in real `mainspring run` processes: the drain delay keeps the listener open
while /ready answers 503, a request cut at the graceful timeout gets a JSON 503, the
in-flight cap sheds with 503, and keep-alive means the same for one worker or many."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from held_request import held_request
from process_support import EXIT_DEADLINE, Runner, free_port, wait_for

from mainspring.server.exitcodes import EXIT_OK

APP = "tests.sample_apps.served_app:app"
DRAIN_DELAY = "3"
KEEPALIVE_BOUND = 4.0
"""Seconds: an idle connection must be closed well before uvicorn's own default (5 s)."""


def ready_status(base_url: str) -> int | None:
    """/ready's status, or None when nothing accepts the connection."""
    try:
        return httpx.get(f"{base_url}/ready", timeout=5).status_code
    except httpx.TransportError:
        return None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ready_answers_503_during_the_drain_while_a_held_request_completes(
    runner: Runner, tmp_path: Path, workers: str
) -> None:
    port = free_port()
    process = runner.start(
        APP, "--port", str(port), "--workers", workers, "--drain-delay", DRAIN_DELAY
    )
    runner.wait_serving(process, port)
    base = f"http://127.0.0.1:{port}"
    assert ready_status(base) == 200

    with held_request(base, tmp_path / "held") as held:
        held.wait_until_held()
        process.send_signal(signal.SIGTERM)
        # A new connection is still accepted: the listener stays open during the drain.
        wait_for(lambda: ready_status(base) == 503, EXIT_DEADLINE, "/ready to answer 503")
        held.release()
        response = held.response()

    assert response.status_code == 200
    assert runner.wait_exit(process) == EXIT_OK


def test_a_request_cut_at_the_graceful_timeout_gets_a_json_503(
    runner: Runner, tmp_path: Path
) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port), "--graceful-timeout", "1")
    runner.wait_serving(process, port)

    with held_request(f"http://127.0.0.1:{port}", tmp_path / "never") as held:
        held.wait_until_held()
        process.send_signal(signal.SIGTERM)
        response = held.response()  # never released: the server gives up on it

    assert response.status_code == 503
    assert response.json() == {
        "error": "shutting_down",
        "request_id": response.headers["x-request-id"],
    }
    assert response.headers["retry-after"] == "1"
    runner.wait_exit(process)


def test_past_the_in_flight_cap_requests_are_shed_with_503(runner: Runner, tmp_path: Path) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port), "--max-inflight", "1")
    runner.wait_serving(process, port)
    base = f"http://127.0.0.1:{port}"

    with held_request(base, tmp_path / "held") as held:
        held.wait_until_held()
        shed = httpx.get(f"{base}/ping")
        ready = httpx.get(f"{base}/ready")
        held.release()
        assert held.response().status_code == 200

    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    body = shed.json()
    assert body["error"] == "overloaded"
    assert body["request_id"] == shed.headers["x-request-id"]
    assert ready.status_code == 200, "probes are never shed"
    assert httpx.get(f"{base}/ping").status_code == 200


@pytest.mark.parametrize("workers", ["1", "2"])
def test_keepalive_closes_an_idle_connection_with_one_worker_or_many(
    runner: Runner, workers: str
) -> None:
    port = free_port()
    process = runner.start(APP, "--port", str(port), "--workers", workers, "--keepalive", "1")
    runner.wait_serving(process, port)

    with socket.create_connection(("127.0.0.1", port), timeout=KEEPALIVE_BOUND) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b"}" not in received:  # the whole JSON body of the one response
            chunk = conn.recv(4096)
            assert chunk, f"closed before the response ended: {received!r}"
            received += chunk
        idle_since = time.monotonic()
        assert conn.recv(4096) == b"", "the server sent more than one response"
        idle = time.monotonic() - idle_since

    assert received.startswith(b"HTTP/1.1 200")
    assert idle < KEEPALIVE_BOUND
