"""End to end: `markets serve --replay` in its own process, its dashboard in Debian's chromium,
until a replayed game goes final and its market shows as settled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_DEADLINE = 60.0
"""Seconds; every wait below is bounded."""
SETTLE_DEADLINE = 90.0
STOP_DEADLINE = 30.0
SPEED = 600
"""Game seconds per real second: the first NBA game ends about 20 s after the feed starts."""

pytestmark = pytest.mark.timeout(240)


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("MAINSPRING_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`markets serve --replay` on free ports with a fresh database; its base URL."""
    need_chromium()
    port, feed_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'markets.db'}",
        "MAINSPRING_LEASE_URL": str(tmp_path / "leases"),
        "MAINSPRING_LOG_FORMAT": "console",
        "SCORES_LIVE_INTERVAL": "1",
    }
    command = [sys.executable, "-m", "markets.cli", "serve", "--replay", "--port", str(port)]
    command += ["--replay-port", str(feed_port), "--speed", str(SPEED)]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, tmp_path / "serve.log")
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # it stops its replay feed child on the way out
            try:
                process.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"markets serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"markets serve was not ready within {START_DEADLINE:g}s:\n{log.read_text()}")


def test_a_market_reaches_settled_in_the_browser(server: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(server)
            assert page.locator('[data-service="nba"] .state').inner_text() in (
                "running",
                "starting",
                "standby",
            )
            # No reloads of our own: the page refreshes itself, as a watcher would see it.
            settled = page.locator('[data-state="settled"]').first
            settled.wait_for(timeout=SETTLE_DEADLINE * 1000)
            assert settled.get_attribute("data-market-id")
            assert "Final" in settled.inner_text()
        finally:
            browser.close()
