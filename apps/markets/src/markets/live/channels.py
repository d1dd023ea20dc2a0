"""The live channels, and what each does with a client that reads slower than it publishes."""

from __future__ import annotations

from mainspring.realtime import ChannelPolicy, Overflow
from markets.espn.model import LEAGUES

MARKETS = "markets"
"""A market opened, locked, settled or voided."""
SERVICES = "services"
"""A service's state or reason changed."""


def games(league: str) -> str:
    """A game's score or status changed (``games:nba``...)."""
    return f"games:{league}"


CHANNELS = (MARKETS, SERVICES, *(games(league) for league in LEAGUES))
"""Every channel a client may follow; anything else is unknown."""

POLICIES = {
    # Events a client must not miss: a slow one is disconnected and resumes from history.
    # The bounds leave room for the burst of a first import (a market per game).
    MARKETS: ChannelPolicy(max_lag=2000, max_queued_bytes=4 << 20, history=2000),
    # Only the latest state of each game or service matters (keyed by its id or name).
    "games:*": ChannelPolicy(overflow=Overflow.LATEST_ONLY, history=500),
    SERVICES: ChannelPolicy(overflow=Overflow.LATEST_ONLY, history=200),
}
