"""End to end, in Debian's chromium: the dashboard follows `markets serve --replay` live,
without reloading, until a replayed game goes final and its market shows as settled; and
it resumes after the server restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from markets_support import listening
from playwright.async_api import async_playwright, expect
from playwright.sync_api import sync_playwright
from server_support import CHROMIUM, need_chromium

from mainspring.resources import Database
from markets.db.board import store_board
from markets.espn.fake import FakeEspn, serve_fake
from markets.espn.fixtures import RecordedFeed
from markets.espn.parser import parse_scoreboard

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


WATCH_CHANGES = """() => {
    // Counts the changes made to cards already on the page: scores and market states.
    window.__changed = {scores: 0, states: 0};
    new MutationObserver((records) => {
        for (const record of records) {
            if (record.type === "attributes" && record.oldValue !== record.target.dataset.state) {
                window.__changed.states++;
            } else if (record.type === "childList"
                       && record.target.matches(".home-score, .away-score")) {
                window.__changed.scores++;
            }
        }
    }).observe(document.body, {
        subtree: true, childList: true,
        attributes: true, attributeFilter: ["data-state"], attributeOldValue: true,
    });
}"""


def test_the_dashboard_follows_the_replay_live_without_reloading(server: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            fetches: list[str] = []
            page.on("request", lambda r: r.resource_type == "fetch" and fetches.append(r.url))
            page.goto(server)
            page.evaluate("window.__marker = 'the same page'")
            page.evaluate(WATCH_CHANGES)
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            assert page.locator('[data-service="nba"] .state').inner_text() in (
                "running",
                "starting",
                "standby",
            )
            page.locator('body[data-live="live"]').wait_for(timeout=START_DEADLINE * 1000)

            # A score moves on a card, and a market changes state, in place.
            page.wait_for_function(
                "window.__changed.scores > 0 && window.__changed.states > 0",
                timeout=SETTLE_DEADLINE * 1000,
            )
            settled = page.locator('[data-state="settled"]').first
            settled.wait_for(timeout=SETTLE_DEADLINE * 1000)
            assert settled.get_attribute("data-market-id")
            assert "Final" in settled.inner_text()
            assert page.evaluate("window.__marker") == "the same page"
            assert navigations == []
            # One catch-up after subscribing; everything since came over the socket.
            assert fetches == [f"{server}/"]
        finally:
            browser.close()


async def import_day(client: httpx.AsyncClient) -> None:
    """Import the recorded MLB board of 2025-06-04, as an operator would, and wait for it."""
    body = {"league": "mlb", "start": "2025-06-04", "end": "2025-06-04"}
    status_url = (await client.post("/admin/imports", json=body)).json()["status_url"]
    async with asyncio.timeout(30):
        while True:
            state = (await client.get(status_url)).json()["state"]
            if state not in ("queued", "running"):
                assert state == "done"
                return
            await asyncio.sleep(0.05)


def live_board(fake: FakeEspn) -> dict[str, Any]:
    """The recorded MLB board of 2025-06-04 that the fake serves (ESPN's JSON)."""
    return next(b for b in fake.source.boards if b.name.startswith("mlb-2025-06-04")).payload


def live_game(fake: FakeEspn, index: int) -> dict[str, Any]:
    """The `index`-th game in progress on that board."""
    return [e for e in live_board(fake)["events"] if e["status"]["type"]["state"] == "in"][index]


async def store_quietly(database_url: str, payload: dict[str, Any]) -> None:
    db = Database(database_url)
    await db.open()
    try:
        async with db.session() as session:
            await store_board(session, parse_scoreboard(payload, "mlb"), None)
    finally:
        await db.close()


def score(event: dict[str, Any], runs: int = 1) -> str:
    home = next(c for c in event["competitions"][0]["competitors"] if c["homeAway"] == "home")
    home["score"] = str(int(home["score"]) + runs)
    return str(home["score"])


def finish(event: dict[str, Any]) -> None:
    """The game ends, won by the home side."""
    for competitor in event["competitions"][0]["competitors"]:
        competitor["winner"] = competitor["homeAway"] == "home"
    event["status"]["type"].update(
        state="post",
        name="STATUS_FINAL",
        completed=True,
        description="Final",
        detail="Final",
        shortDetail="Final",
    )


async def test_the_dashboard_catches_up_after_the_server_restarts(tmp_path: Path) -> None:
    need_chromium()
    fake = FakeEspn(RecordedFeed())
    port = free_port()
    with serve_fake(fake) as feed:
        settings = {
            "database_url": f"sqlite:///{tmp_path / 'markets.db'}",
            "espn_base_url": feed,
            "MAINSPRING_LEASE_URL": str(tmp_path / "leases"),
        }
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            navigations: list[str] = []
            first, second = live_game(fake, 0), live_game(fake, 1)
            async with (
                listening(port, **settings) as (_, url),
                httpx.AsyncClient(base_url=url) as client,
            ):
                await import_day(client)
                games = (await client.get("/markets?league=mlb&limit=200")).json()["items"]
                ids = {m["game"]["espn_event_id"]: m["game"]["id"] for m in games}
                await page.goto(url)
                await page.evaluate("window.__marker = 'the same page'")
                page.on("framenavigated", lambda frame: navigations.append(frame.url))
                await page.locator('body[data-live="live"]').wait_for()
                card = page.locator(f'[data-game-id="{ids[first["id"]]}"]')
                await expect(card).to_have_attribute("data-state", "locked")

                runs = score(first)
                await import_day(client)
                await expect(card.locator(".home-score")).to_have_text(runs)
            await page.locator('body[data-live="offline"]').wait_for()

            # While the server is down the game ends, and is stored without being published
            # (an import from the command line). Back, the server's channels start afresh:
            # the page learns it from a resync, since no message will ever tell it.
            runs = score(first, 2)
            finish(first)
            await store_quietly(settings["database_url"], live_board(fake))
            async with (
                listening(port, **settings) as (_, url),
                httpx.AsyncClient(base_url=url) as client,
            ):
                await expect(card).to_have_attribute("data-state", "settled", timeout=30_000)
                await expect(card.locator(".home-score")).to_have_text(runs)
                await expect(card.locator(".home")).to_have_class("home winner")
                await page.locator('body[data-live="live"]').wait_for()

                other = page.locator(f'[data-game-id="{ids[second["id"]]}"] .home-score')
                runs = score(second)
                await import_day(client)
                await expect(other).to_have_text(runs)  # and live again
            assert await page.evaluate("window.__marker") == "the same page"
            assert navigations == []
            await browser.close()
