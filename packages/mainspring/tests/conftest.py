"""Shared fixtures: the real Redis and PostgreSQL servers, and a manual clock."""

from __future__ import annotations

import pytest
from process_support import runner
from server_support import POSTGRES_URL, REDIS_URL, require_server

from mainspring.clock import ManualClock

__all__ = ["runner"]


@pytest.fixture
def redis_url() -> str:
    return require_server(REDIS_URL, "Redis")


@pytest.fixture
def postgres_url() -> str:
    return require_server(POSTGRES_URL, "PostgreSQL")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
