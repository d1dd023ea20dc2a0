"""/health, /ready and /debug/status, mounted by the runtime."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from mainspring.dependencies import RuntimeDep, get_runtime
from mainspring.observability.openapi import declares_errors

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
    """A dependency for operator endpoints: the admin token, or loopback without one.

    FastAPI reads and parses a route's body before it runs its dependencies: a route
    that takes a body should be an `AdminRoute` instead, which checks first."""
    token = rt.settings.admin_token
    require_admin(request, token.get_secret_value() if token else None)


ADMIN_ERRORS = {
    401: "Missing or wrong admin token.",
    403: "No admin token is set and the client is remote or behind a proxy.",
}
declares_errors(admin_only, ADMIN_ERRORS)


class AdminRoute(APIRoute):
    """An operator route whose admin check runs before its body is read, so an
    unauthenticated client cannot make the server read, hold or parse a large body.

    Use it for a router of operator endpoints:
    ``APIRouter(prefix="/admin", route_class=AdminRoute)``.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def admin_first(request: Request) -> Response:
            await admin_only(request, await get_runtime(request))
            return await handle(request)

        return admin_first


declares_errors(AdminRoute, ADMIN_ERRORS)


@router.get(
    "/debug/status",
    summary="Every resource and service of this process",
    dependencies=[Depends(admin_only)],
)
async def debug_status(rt: RuntimeDep) -> dict[str, Any]:
    return await rt.status()


def require_admin(request: Request, token: str | None) -> None:
    """Bearer `token` in constant time; with no token configured, loopback clients only,
    and only when the request carries no proxy header of any kind."""
    if token is None:
        host = request.client.host if request.client else ""
        # A reverse proxy on the same host makes every client look local: what it
        # forwards is not a local operator, whichever header it uses to say so.
        proxied = any(is_proxy_header(name) for name in request.headers)
        if proxied or not _is_loopback(host):
            raise HTTPException(
                403,
                "set MAINSPRING_ADMIN_TOKEN to use this from another host or through a proxy",
            )
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


PROXY_HEADERS = frozenset(
    {
        "forwarded",
        "via",
        "client-ip",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "x-proxyuser-ip",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        "x-host",
    }
)
"""Headers that proxies, load balancers and CDNs add to say whom they forward."""
PROXY_HEADER_PREFIXES = (
    "x-forwarded",
    "x-original-",
    "x-envoy-",
    "x-amzn-",
    "x-appengine-",
    "x-azure-",
    "cf-",
    "fastly-",
    "akamai-",
)
PROXY_HEADER_SUFFIXES = ("-client-ip", "-connecting-ip", "-real-ip", "-forwarded-for")


def is_proxy_header(name: str) -> bool:
    """Whether a request header (lower-case name) shows that a proxy passed the request on:
    those above, or any X-Forwarded*, X-Original-*, X-Envoy-*, X-Azure-*, CF-*... header,
    or any ending in -Client-IP, -Connecting-IP, -Real-IP or -Forwarded-For."""
    return (
        name in PROXY_HEADERS
        or name.startswith(PROXY_HEADER_PREFIXES)
        or name.endswith(PROXY_HEADER_SUFFIXES)
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
