"""Live updates: markets, games and services published on hub channels after each change,
followed over WebSocket or Server-Sent Events (see docs/markets.md, "Live updates")."""

from markets.live.channels import CHANNELS, MARKETS, POLICIES, SERVICES, games
from markets.live.feed import Feed, StatusFeed
from markets.live.routes import router

__all__ = ["CHANNELS", "MARKETS", "POLICIES", "SERVICES", "Feed", "StatusFeed", "games", "router"]
