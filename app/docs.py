"""The API docs pages (``/docs`` Swagger UI, ``/redoc``) served with their JavaScript, CSS and icon from this
process, so they work on a host without internet access (FastAPI's defaults load them from a CDN).

The assets come from the ``fastapi-offline`` package (MIT; it bundles Swagger UI 5, Apache-2.0, and ReDoc,
MIT) and are served read-only under ``/docs-assets/``.  (ReDoc's "powered by" footer still points at its
vendor's logo image; offline it is simply not shown.)
"""
from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Replace FastAPI's CDN-based docs pages by pages whose assets this app serves itself."""
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in
                            {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}]
    app.docs_url, app.redoc_url = docs_url, redoc_url
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    # plain Starlette routes, like FastAPI's own docs routes (public pages, not API operations)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)

    app.add_route(docs_url, swagger_ui, include_in_schema=False)
    app.add_route(oauth2_redirect, swagger_ui_redirect, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
