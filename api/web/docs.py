"""/docs and /redoc without a CDN: Swagger UI and ReDoc served by the app from the files the
`fastapi-offline` package ships (MIT; Swagger UI Apache-2.0, ReDoc MIT), so the API's docs open
on a machine with no internet. The app is created with docs_url=None and redoc_url=None."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI and ReDoc start from an inline script and ReDoc runs a blob: worker; everything else
# comes from this site, and no other site may frame the pages.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def _guarded(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response

PREFIX = "/static/docs"


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def install(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=assets_dir()), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return _guarded(get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{title} — API docs",
                                            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
                                            swagger_css_url=f"{PREFIX}/swagger-ui.css",
                                            swagger_favicon_url=f"{PREFIX}/favicon.png",
                                            oauth2_redirect_url="/docs/oauth2-redirect"))

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return _guarded(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return _guarded(get_redoc_html(openapi_url=app.openapi_url, title=f"{title} — API reference",
                                       redoc_js_url=f"{PREFIX}/redoc.standalone.js",
                                       redoc_favicon_url=f"{PREFIX}/favicon.png", with_google_fonts=False))
