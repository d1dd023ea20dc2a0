"""The dashboard: what each service is doing and every market by state, with scores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import ColumnElement

from mainspring import RuntimeDep
from mainspring.resources import DbSession
from markets.api.queries import markets_with_games
from markets.db.models import Game, Market, MarketState

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))

PER_STATE = 50
"""Markets shown per state: the dashboard is a glance, the API has them all."""

ORDER: dict[MarketState, ColumnElement[Any]] = {
    MarketState.LOCKED: Game.start_time.desc(),
    MarketState.OPEN: Game.start_time.asc(),
    MarketState.SETTLED: Market.settled_at.desc(),
    MarketState.VOIDED: Market.voided_at.desc(),
}
"""Live games first, then the next to start, then the latest results."""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(request: Request, session: DbSession, rt: RuntimeDep) -> HTMLResponse:
    groups: dict[MarketState, list[Market]] = {}
    for state, order in ORDER.items():
        query = markets_with_games().where(Market.state == state).order_by(order).limit(PER_STATE)
        groups[state] = list((await session.scalars(query)).unique())
    status = await rt.status()
    now = datetime.now(UTC)
    services = [_service_row(service, now) for service in status["services"]]
    return templates.TemplateResponse(
        request, "dashboard.html", {"services": services, "groups": groups, "now": now}
    )


def _service_row(service: dict[str, Any], now: datetime) -> dict[str, Any]:
    error = service.get("last_error")
    return {
        "name": service["name"],
        "state": service["state"],
        "reason": service.get("reason"),
        "next_tick": _until(service.get("next_tick_at"), now),
        "error": f"{error['type']}: {error['message']}" if error else None,
    }


def _until(moment: str | None, now: datetime) -> str:
    if not moment:
        return "—"
    seconds = (datetime.fromisoformat(moment) - now).total_seconds()
    return "now" if seconds < 1 else f"in {seconds:.0f}s"
