"""Prometheus metrics: the recorders, /metrics and its admin guard, and several workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi import FastAPI
from process_support import Runner, free_port
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from mainspring.observability.metrics import HttpMetrics, RuntimeMetrics, http_metrics
from mainspring.observability.metrics_router import metrics_router, serve_metrics_on_port
from mainspring.runtime import Runtime
from mainspring.settings import MainspringSettings

DEADLINE = 60.0


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# -- recorders ----------------------------------------------------------------------


def test_a_request_is_timed_by_route_and_status_class_and_leaves_no_one_in_flight() -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    metrics.request_started("GET")
    metrics.request_started("GET")
    assert sample(registry, "mainspring_http_requests_in_flight", method="GET") == 2
    metrics.request_finished("GET", "/items/{item_id}", 200, 0.004)
    metrics.request_finished("GET", "/items/{item_id}", 201, 0.3)
    labels = {"method": "GET", "route": "/items/{item_id}", "status_class": "2xx"}
    assert sample(registry, "mainspring_http_request_duration_seconds_count", **labels) == 2
    assert sample(registry, "mainspring_http_request_duration_seconds_sum", **labels) == 0.304
    assert sample(registry, "mainspring_http_requests_in_flight", method="GET") == 0


def test_unknown_methods_share_one_label() -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)
    for method in ("BREW", "PROPFIND"):
        metrics.request_started(method)
        metrics.request_finished(method, "<unmatched>", 405, 0.001)
    labels = {"method": "other", "route": "<unmatched>", "status_class": "4xx"}
    assert sample(registry, "mainspring_http_request_duration_seconds_count", **labels) == 2
    assert sample(registry, "mainspring_http_requests_in_flight", method="other") == 0


def test_service_state_is_one_for_the_current_state_only() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    metrics.service_state("nba", "starting")
    metrics.service_state("nba", "running")
    assert sample(registry, "mainspring_service_state", service="nba", state="running") == 1
    assert sample(registry, "mainspring_service_state", service="nba", state="starting") == 0
    assert sample(registry, "mainspring_service_state", service="nba", state="failed") == 0


def test_restarts_ticks_leases_and_loop_health_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = RuntimeMetrics(registry)
    metrics.service_restarted("nba")
    metrics.tick_finished("nba", "scores", 0.2, failed=False)
    metrics.tick_finished("nba", "scores", 0.1, failed=True)
    metrics.lease_held("nba", True)
    metrics.loop_lag(0.002)
    metrics.loop_blocked()
    loop = {"service": "nba", "loop": "scores"}
    assert sample(registry, "mainspring_service_restarts_total", service="nba") == 1
    assert sample(registry, "mainspring_tick_duration_seconds_count", **loop) == 2
    assert sample(registry, "mainspring_tick_failures_total", **loop) == 1
    assert sample(registry, "mainspring_lease_held", service="nba") == 1
    assert sample(registry, "mainspring_event_loop_lag_seconds_count") == 1
    assert sample(registry, "mainspring_event_loop_blocked_total") == 1
    metrics.lease_held("nba", False)
    assert sample(registry, "mainspring_lease_held", service="nba") == 0


# -- /metrics -----------------------------------------------------------------------


def metrics_app() -> FastAPI:
    app = FastAPI()
    app.include_router(metrics_router)
    return app


async def get_metrics(
    app: FastAPI, token: str | None, *, client: str = "127.0.0.1", auth: str | None = None
) -> httpx.Response:
    settings = MainspringSettings(admin_token=token)
    transport = httpx.ASGITransport(app=app, client=(client, 40000))
    headers = {"authorization": auth} if auth else {}
    async with Runtime(app, settings), httpx.AsyncClient(transport=transport) as http:
        return await http.get("http://app/metrics", headers=headers)


async def test_metrics_shows_this_process_to_a_loopback_client() -> None:
    http_metrics().request_finished("GET", "/shown", 200, 0.01)
    response = await get_metrics(metrics_app(), None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'route="/shown"' in response.text


async def test_metrics_refuses_a_remote_client_without_a_token() -> None:
    response = await get_metrics(metrics_app(), None, client="10.1.2.3")
    assert response.status_code == 403


async def test_metrics_requires_the_admin_token_when_one_is_set() -> None:
    app = metrics_app()
    assert (await get_metrics(app, "s3cret")).status_code == 401
    assert (await get_metrics(app, "s3cret", auth="Bearer wrong")).status_code == 401
    response = await get_metrics(app, "s3cret", client="10.1.2.3", auth="Bearer s3cret")
    assert response.status_code == 200


async def test_metrics_speaks_openmetrics_when_asked() -> None:
    app = FastAPI()
    app.include_router(metrics_router)
    settings = MainspringSettings()
    transport = httpx.ASGITransport(app=app)
    async with Runtime(app, settings), httpx.AsyncClient(transport=transport) as http:
        response = await http.get(
            "http://app/metrics", headers={"accept": "application/openmetrics-text"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_metrics_can_have_a_port_of_their_own() -> None:
    http_metrics().request_finished("GET", "/on-its-own-port", 200, 0.01)
    server, thread = serve_metrics_on_port(0)
    try:
        port = server.server_address[1]
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert response.status_code == 200
    assert 'route="/on-its-own-port"' in response.text


# -- several processes --------------------------------------------------------------

MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from prometheus_client import CollectorRegistry
    from mainspring.observability import metrics

    with metrics.multiprocess_metrics(Path(sys.argv[1])) as path:
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
        http = metrics.http_metrics()
        http.request_started("GET")
        http.request_finished("GET", "/a", 200, 0.5)
        http.request_started("POST")
        files = sorted(p.name for p in path.glob("*.db"))
        text = metrics.exposition()[0].decode()
        metrics.mark_worker_dead(os.getpid())
        after = sorted(p.name for p in path.glob("*.db"))
    print(json.dumps({"files": files, "after": after, "text": text,
                      "removed": not path.exists(),
                      "env": "PROMETHEUS_MULTIPROC_DIR" in os.environ}))
    """
)


def test_multiprocess_dir_collects_samples_in_files_and_is_removed_after(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    result = json.loads(done.stdout)
    pid_files = [name.rsplit("_", 1)[0] for name in result["files"]]
    assert pid_files == ["gauge_livesum", "histogram"]
    assert 'mainspring_http_request_duration_seconds_count{method="GET"' in result["text"]
    assert 'mainspring_http_requests_in_flight{method="POST"} 1.0' in result["text"]
    assert [name.rsplit("_", 1)[0] for name in result["after"]] == ["histogram"]
    assert result["removed"]
    assert not result["env"]


def test_metrics_under_two_workers_sums_both_workers_counts(runner: Runner, tmp_path: Path) -> None:
    """`mainspring run --workers 2`: the app's /metrics (loopback needs no token) and the
    master's metrics port both merge every worker's samples."""
    temp = tmp_path / "tmp"  # where the runner makes this run's metrics directory
    temp.mkdir()
    port, metrics_port = free_port(), free_port()
    runner.env.pop("MAINSPRING_ADMIN_TOKEN", None)  # from loopback, no token is then needed
    master = runner.start(
        "tests.sample_apps.runner_obs_app:app",
        *("--port", str(port), "--workers", "2", "--metrics-port", str(metrics_port)),
        env={"TMPDIR": str(temp)},
    )
    runner.wait_serving(master, port)
    base = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    sent = 0

    def one(item: int) -> int:
        # A fresh connection per request, so that either worker may accept it.
        response = httpx.get(f"{base}/items/{item}", timeout=10)
        response.raise_for_status()
        return int(response.json()["pid"])

    deadline = time.monotonic() + DEADLINE
    with ThreadPoolExecutor(8) as pool:
        while len(pids) < 2 or sent < 40:
            assert time.monotonic() < deadline, f"only pids {pids} answered {sent} requests"
            pids.update(pool.map(one, range(sent, sent + 8)))
            sent += 8

    for url, in_flight_now in (
        (f"{base}/metrics", 1),
        (f"http://127.0.0.1:{metrics_port}/metrics", 0),
    ):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, response.text
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        counts = [
            s.value
            for s in families["mainspring_http_request_duration_seconds"].samples
            if s.name.endswith("_count") and s.labels.get("route") == "/items/{item_id}"
        ]
        assert counts == [sent], url
        in_flight = families["mainspring_http_requests_in_flight"].samples
        # Only the app's own /metrics request is in flight while it is answered.
        assert {s.labels["method"]: s.value for s in in_flight}.get("GET") == in_flight_now, url
    (metrics_dir,) = temp.glob("mainspring-*/metrics/*")
    writers = {name.rsplit("_", 1)[1] for name in os.listdir(metrics_dir) if "histogram" in name}
    assert {f"{pid}.db" for pid in pids} <= writers
