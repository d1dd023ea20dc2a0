"""The real servers tests run against, and the skip-or-fail rule when one is down.

A plain module (on pytest's pythonpath) so test suites outside this folder share the rule.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("MAINSPRING_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "MAINSPRING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium, which browser tests drive through Playwright (no browser download)."""


def require_server(url: str, what: str) -> str:
    """Return `url` when its server accepts connections; skip (or fail in CI) otherwise."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 2):
            return url
    except OSError as exc:
        message = f"{what} is not reachable at {parts.hostname}:{parts.port} ({exc})"
        if os.environ.get("MAINSPRING_REQUIRE_SERVERS") == "1":
            pytest.fail(message + " and MAINSPRING_REQUIRE_SERVERS=1")
        pytest.skip(message)


def need_chromium() -> None:
    """Return when Chromium is installed; skip (or fail in CI) otherwise."""
    if CHROMIUM.exists():
        return
    if os.environ.get("MAINSPRING_REQUIRE_SERVERS") == "1":
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser test")
