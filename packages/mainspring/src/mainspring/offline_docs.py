"""/docs with Swagger UI served by the app itself, so it renders with no network.

FastAPI's /docs page loads Swagger UI's script and stylesheet from a CDN: offline, or
behind a firewall, it is a blank page. The `swagger_ui_bundle` package ships those
files; the runtime serves them under ``<docs_url>/assets`` and points /docs at them.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

ASSETS_NAME = "swagger-ui-assets"


def serve_docs_offline(app: FastAPI) -> None:
    """Replace `app`'s /docs page with one that loads Swagger UI from the app itself."""
    docs_url, openapi_url = app.docs_url, app.openapi_url
    if docs_url is None or openapi_url is None:
        return  # the app turned its docs off
    routes = app.router.routes
    index = next((i for i, route in enumerate(routes) if _is_page(route, docs_url)), None)
    if index is None:
        return  # the app serves its own page at docs_url
    assets = docs_url.rstrip("/") + "/assets"

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "").rstrip("/")
        redirect_url = app.swagger_ui_oauth2_redirect_url
        return get_swagger_ui_html(
            openapi_url=root_path + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root_path}{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{root_path}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root_path}{assets}/favicon-32x32.png",
            oauth2_redirect_url=root_path + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    # In place, and the assets right after it: before any catch-all route of the app.
    routes[index] = Route(docs_url, swagger_ui_html, include_in_schema=False)
    routes.insert(
        index + 1, Mount(assets, app=StaticFiles(directory=swagger_ui_path), name=ASSETS_NAME)
    )


def _is_page(route: BaseRoute, docs_url: str) -> bool:
    """FastAPI's own /docs route (a plain Route; an app's own page would be an APIRoute)."""
    return type(route) is Route and route.path == docs_url
