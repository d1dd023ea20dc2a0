"""Serves a realistic /debug/status behind a bearer token, for `mainspring status`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import PlainTextResponse

TOKEN = "s3cret"

app = FastAPI()


def iso(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).isoformat()


def service(name: str, state: str, **fields: object) -> dict[str, object]:
    """A service entry shaped like ServiceStatus.to_dict(), kept literal so this stays canned."""
    return {
        "name": name,
        "state": state,
        "reason": None,
        "critical": False,
        "singleton": False,
        "restarts": 0,
        "crashes": 0,
        "last_error": None,
        "next_restart_at": None,
        "last_tick_started": None,
        "last_tick_duration": None,
        "next_tick_at": None,
        "lease_holder": None,
        "fencing_token": None,
        "loops": {},
        **fields,
    }


def services() -> list[dict[str, object]]:
    return [
        service(
            "nba-poller",
            "running",
            singleton=True,
            lease_holder="host-a:4242",
            fencing_token=17,
            last_tick_started=iso(-5),
            last_tick_duration=0.25,
            next_tick_at=iso(55),
        ),
        service(
            "deposit-watcher",
            "backoff",
            restarts=2,
            crashes=2,
            last_error={"type": "ConnectError", "message": "rpc unreachable", "at": iso(-3)},
            next_restart_at=iso(4),
        ),
        service("mlb-poller", "disabled", reason="MLB_ENABLED is not set"),
    ]


@app.get("/debug/status")
async def debug_status(authorization: str | None = Header(default=None)) -> dict[str, object]:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(status_code=401, detail="admin token required")
    return {
        "pid": os.getpid(),
        "version": "0.1.0",
        "uptime": 3725.0,
        "app": {"name": "status-test", "version": "1.2.3"},
        "started_at": "2026-01-01T00:00:00.000+00:00",
        "ready": {"ready": True, "status": "degraded", "checks": {"database": "ok"}},
        "fatal": None,
        "resources": [{"name": "database", "state": "open", "critical": True, "error": None}],
        "services": services(),
    }


@app.get("/not-json/debug/status", response_class=PlainTextResponse)
async def not_json() -> str:
    return "hello"


@app.get("/ping")
async def ping() -> dict[str, int]:
    return {"pid": os.getpid()}
