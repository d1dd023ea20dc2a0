"""The dashboard at ``/``: services and markets, rendered on the server, no build step."""

from markets.web.dashboard import router

__all__ = ["router"]
