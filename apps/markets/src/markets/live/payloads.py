"""What the live channels carry. Markets and games have the JSON API's shapes, so a client
renders a live update and a reloaded page with the same code."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from mainspring import ServiceStatus
from markets.api.schemas import MarketOut
from markets.db.board import MarketChange
from markets.db.models import MarketState

Event = Literal["opened", "locked", "settled", "voided"]
EVENTS: dict[MarketState, Event] = {
    MarketState.OPEN: "opened",
    MarketState.LOCKED: "locked",
    MarketState.SETTLED: "settled",
    MarketState.VOIDED: "voided",
}


class MarketUpdate(BaseModel):
    """On `markets`: one state change of one market."""

    event: Event
    market_id: int
    game_id: int
    state: MarketState
    """The state the market entered."""
    market: MarketOut
    """The market as its transaction left it: further along than `state` when one
    transaction moved it twice (a game first seen final is opened, locked and settled)."""

    @classmethod
    def of(cls, change: MarketChange) -> MarketUpdate:
        market = change.market
        return cls(
            event=EVENTS[change.state],
            market_id=market.id,
            game_id=market.game_id,
            state=change.state,
            market=MarketOut.of(market),
        )


class ServiceOut(BaseModel):
    """On `services`, and on the dashboard: what a service is doing."""

    name: str
    state: str
    reason: str | None
    error: str | None
    """The last crash, as ``Type: message``."""

    @classmethod
    def of(cls, status: ServiceStatus) -> ServiceOut:
        error = status.last_error
        return cls(
            name=status.name,
            state=status.state.value,
            reason=status.reason,
            error=f"{error.type}: {error.message}" if error else None,
        )
