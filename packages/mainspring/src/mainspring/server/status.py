"""`mainspring status`: read a running server's /debug/status and show it as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mainspring.server.address import base_url
from mainspring.server.pidfile import pidfile_dir, read_live

STATE_STYLES = {
    "running": "green",
    "standby": "cyan",
    "starting": "cyan",
    "backoff": "yellow",
    "failed": "red",
    "disabled": "dim",
    "stopped": "dim",
    "stopping": "dim",
}
RESOURCE_STYLES = {"open": "green", "failed": "red", "closed": "dim"}


class StatusError(Exception):
    """The status could not be read; the message is one line that says what to do."""


def local_url() -> str:
    """The URL of the one app that `mainspring run` serves on this host, for this user.

    Its pidfile names the host and port; only a pidfile whose lock is held counts, so a
    file left by a killed server is never followed.
    """
    directory = pidfile_dir()
    running = [
        info
        for info in map(read_live, sorted(directory.glob("mainspring-*.pid")))
        if info is not None
    ]
    if not running:
        raise StatusError(
            f"no app started by `mainspring run` is running here (no live pidfile in "
            f"{directory}); pass its URL"
        )
    if len(running) > 1:
        found = ", ".join(f"{base_url(i.host, i.port)} ({i.app})" for i in running)
        raise StatusError(f"several apps are running here: {found}; pass the URL of one")
    return base_url(running[0].host, running[0].port)


def fetch_status(url: str, token: str | None, timeout: float = 5.0) -> dict[str, Any]:
    endpoint = url.rstrip("/") + "/debug/status"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(endpoint, headers=headers, timeout=timeout)
    except httpx.ConnectError:
        raise StatusError(f"cannot connect to {url}: is the server running?") from None
    except httpx.TimeoutException:
        raise StatusError(f"{endpoint} did not answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise StatusError(f"cannot read {endpoint}: {exc}") from None
    if response.status_code in (401, 403):
        raise StatusError(
            f"{endpoint} answered {response.status_code}: pass --token "
            "(or set MAINSPRING_ADMIN_TOKEN) with the server's admin token"
        )
    if response.status_code != 200:
        raise StatusError(f"{endpoint} answered {response.status_code} {response.reason_phrase}")
    try:
        body = response.json()
    except ValueError:
        raise StatusError(f"{endpoint} did not answer JSON; is this a mainspring app?") from None
    if not isinstance(body, dict):
        raise StatusError(f"{endpoint} answered JSON that is not a status object")
    return body


READY_STYLES = {"ready": "green", "degraded": "yellow", "starting": "cyan"}


def render_status(status: dict[str, Any], console: Console) -> None:
    console.print(_header(status))
    if status.get("fatal"):
        console.print(Text(f"fatal: {status['fatal']}", style="bold red"))
    services, resources = status.get("services"), status.get("resources")
    console.print(_services_table(services) if services else Text("no services", style="dim"))
    console.print(_resources_table(resources) if resources else Text("no resources", style="dim"))


def _header(status: dict[str, Any]) -> Text:
    header = Text()
    app = status.get("app")
    name = app.get("name") if isinstance(app, dict) else app
    if name:
        header.append(f"{name}  ", style="bold")
    header.append(f"pid {status.get('pid', '?')}  version {status.get('version', '?')}  ")
    header.append(f"uptime {_duration(status.get('uptime'))}  ")
    readiness = _readiness(status.get("ready"))
    header.append(readiness, style=READY_STYLES.get(readiness, "red"))
    return header


def _readiness(ready: object) -> str:
    """The /ready verdict as one word: ready, degraded, starting, unavailable, stopping..."""
    if isinstance(ready, dict):
        if ready.get("status"):
            return str(ready["status"])
        ready = ready.get("ready")
    return "ready" if ready else "not ready"


def _services_table(services: list[dict[str, Any]]) -> Table:
    table = Table(title="services", title_justify="left")
    for column in ("name", "state", "restarts", "last tick", "next tick", "lease", "last error"):
        table.add_column(column, overflow="fold")
    for service in services:
        state = str(service.get("state", "?"))
        shown_state = Text(state, style=STATE_STYLES.get(state, ""))
        if service.get("reason"):
            shown_state.append(f" ({service['reason']})", style="dim")
        table.add_row(
            str(service.get("name", "?")),
            shown_state,
            str(service.get("restarts", 0)),
            _last_tick(service),
            _relative(service.get("next_tick_at")),
            _lease(service),
            _error(service.get("last_error")),
        )
    return table


def _resources_table(resources: list[dict[str, Any]]) -> Table:
    table = Table(title="resources", title_justify="left")
    for column in ("name", "state", "critical", "error"):
        table.add_column(column, overflow="fold")
    for resource in resources:
        state = str(resource.get("state", "?"))
        table.add_row(
            str(resource.get("name", "?")),
            Text(state, style=RESOURCE_STYLES.get(state, "")),
            "yes" if resource.get("critical") else "",
            _error(resource.get("error")),
        )
    return table


def _last_tick(service: dict[str, Any]) -> str:
    started = _relative(service.get("last_tick_started"))
    duration = service.get("last_tick_duration")
    if isinstance(duration, int | float):
        return f"{started} ({duration:.2f}s)"
    return started


def _lease(service: dict[str, Any]) -> str:
    holder, token = service.get("lease_holder"), service.get("fencing_token")
    if holder is None and token is None:
        return ""
    return f"{holder or '?'} #{token}" if token is not None else str(holder)


def _error(error: object) -> Text:
    if not error:
        return Text("")
    if isinstance(error, dict):
        return Text(f"{error.get('type', 'Error')}: {error.get('message', '')}", style="red")
    return Text(str(error), style="red")


def _relative(timestamp: object) -> str:
    """An ISO 8601 time as "12s ago" or "in 3m"; anything else shown as it came."""
    if not timestamp:
        return ""
    try:
        at = datetime.fromisoformat(str(timestamp))
    except ValueError:
        return str(timestamp)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    seconds = (at - datetime.now(UTC)).total_seconds()
    return f"in {_duration(seconds)}" if seconds >= 0 else f"{_duration(-seconds)} ago"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
