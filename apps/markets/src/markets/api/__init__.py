"""The JSON API: public reads of markets and games, and the operator's import endpoints."""

from fastapi import APIRouter

from markets.api import admin, markets

router = APIRouter()
router.include_router(markets.router)
router.include_router(admin.router)

__all__ = ["router"]
