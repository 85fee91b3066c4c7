"""The FastAPI application of ``agent-etl serve``: REST under /api/v1, /ws, /metrics, the dashboard at /."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from agent_orchestrated_etl.api import pipelines, problems, runs, sessions, system, websocket
from agent_orchestrated_etl.api.audit import Audit
from agent_orchestrated_etl.api.limits import BodyLimit
from agent_orchestrated_etl.api.security import HostCheck
from agent_orchestrated_etl.api.service import ServeOptions, Server

STATIC = resources.files("agent_orchestrated_etl.api") / "static"


def create_app(options: ServeOptions) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Server(options) as server:
            app.state.server = server
            yield

    app = FastAPI(
        title="agent-etl",
        summary="Pipelines, runs, agents and tools of an agent-etl server.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    problems.install(app)
    app.add_middleware(Audit)
    app.add_middleware(BodyLimit, max_bytes=options.max_body_bytes)
    if options.cors_origins:
        # Closed unless configured: a page of another origin gets no CORS headers, so its script reads nothing.
        # The session cookie is SameSite=Strict and never goes cross-site, so only bearer tokens are allowed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Location", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(HostCheck, allowed=options.allowed_hosts)  # added last, so it runs first
    for router in (pipelines.router, runs.router, system.router, sessions.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(system.metrics_router)
    app.include_router(websocket.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _offline_docs(app)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    return app


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package: FastAPI's default /docs loads it from a CDN."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "",
            title="agent-etl API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
