"""/docs renders its operations in Debian's chromium with every request off this host
refused: Swagger UI comes from the app, not from a CDN."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Route, expect, sync_playwright
from process_support import Runner, free_port
from server_support import CHROMIUM, need_chromium

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
RENDER_DEADLINE_MS = 30_000


def test_docs_render_the_operations_with_no_network(runner: Runner) -> None:
    need_chromium()
    port = free_port()
    process = runner.start("tests.sample_apps.served_app:app", "--port", str(port))
    runner.wait_serving(process, port)
    refused: list[str] = []

    def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", offline)
            page.goto(f"http://127.0.0.1:{port}/docs")
            operation = page.locator(".opblock-summary-path", has_text="/ping")
            expect(operation).to_be_visible(timeout=RENDER_DEADLINE_MS)
            expect(page.locator(".opblock-summary-path", has_text="/ready")).to_be_visible()
        finally:
            browser.close()
    assert refused == []
