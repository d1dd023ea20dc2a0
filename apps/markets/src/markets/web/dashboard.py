"""The dashboard: what each service is doing and every market by state, with scores.

Rendered on the server; `dashboard.js` then follows the live channels and updates the
page in place (scores, market states, new markets, services), with no reload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import ColumnElement

from mainspring import RuntimeDep
from mainspring.resources import DbSession
from markets.api.schemas import MarketOut
from markets.db.models import Game, Market, MarketState
from markets.db.queries import markets_with_games
from markets.live.channels import CHANNELS
from markets.live.payloads import ServiceOut

router = APIRouter()
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

PER_STATE = 50
"""Markets shown per state: the dashboard is a glance, the API has them all."""

ORDER: dict[MarketState, ColumnElement[Any]] = {
    MarketState.LOCKED: Game.start_time.desc(),
    MarketState.OPEN: Game.start_time.asc(),
    MarketState.SETTLED: Market.settled_at.desc(),
    MarketState.VOIDED: Market.voided_at.desc(),
}
"""Live games first, then the next to start, then the latest results (the script keeps
this order for the markets it adds or moves)."""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard(request: Request, session: DbSession, rt: RuntimeDep) -> HTMLResponse:
    groups: dict[MarketState, list[MarketOut]] = {}
    for state, order in ORDER.items():
        query = markets_with_games().where(Market.state == state).order_by(order).limit(PER_STATE)
        groups[state] = [MarketOut.of(market) for market in (await session.scalars(query)).unique()]
    services = [ServiceOut.of(status) for status in rt.supervisor.statuses()]
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "services": services,
            "groups": groups,
            "channels": json.dumps(CHANNELS),
            "per_state": PER_STATE,
        },
    )


@router.get("/dashboard.js", include_in_schema=False)
async def script() -> FileResponse:
    return FileResponse(HERE / "static" / "dashboard.js", media_type="text/javascript")
