"""/health, /ready and /debug/status, mounted by the runtime."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from mainspring.dependencies import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: startup done, critical resources pass their checks")
async def ready(rt: RuntimeDep) -> JSONResponse:
    """Anyone may ask, so each check says only ``ok`` or ``failing``; the reasons (which
    can name hosts or queries) are in /debug/status, for operators."""
    is_ready, body = await rt.readiness()
    body["checks"] = {
        name: "ok" if result == "ok" else "failing"
        for name, result in body.get("checks", {}).items()
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)


async def admin_only(request: Request, rt: RuntimeDep) -> None:
    """A dependency for operator endpoints: the admin token, or loopback without one."""
    token = rt.settings.admin_token
    require_admin(request, token.get_secret_value() if token else None)


@router.get(
    "/debug/status",
    summary="Every resource and service of this process",
    dependencies=[Depends(admin_only)],
)
async def debug_status(rt: RuntimeDep) -> dict[str, Any]:
    return await rt.status()


def require_admin(request: Request, token: str | None) -> None:
    """Bearer `token` in constant time; with no token configured, loopback clients only
    (and not through a proxy)."""
    if token is None:
        host = request.client.host if request.client else ""
        # A reverse proxy on the same host makes every client look local: what it
        # forwards is not a local operator.
        proxied = "x-forwarded-for" in request.headers or "forwarded" in request.headers
        if proxied or not _is_loopback(host):
            raise HTTPException(403, "set MAINSPRING_ADMIN_TOKEN to read this from another host")
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise HTTPException(
            401,
            "send Authorization: Bearer <MAINSPRING_ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise HTTPException(
            401, "the admin token is not valid", headers={"WWW-Authenticate": "Bearer"}
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
