"""The photdb web application: pages, Virtual Observatory services and static files.

:func:`create_app` builds the Starlette application over the read-only pool of
:mod:`photdb.web.service`; :func:`serve` runs it with uvicorn (``photdb serve``).
Scripts and styles are served from the package (``static/``): nothing is loaded
from another site, so the pages work offline.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from photdb.settings import Settings, load_settings
from photdb.web.pages import error_page, page_routes
from photdb.web.service import ReadOnlyPool, ServiceError, WebConfig, log
from photdb.web.vo import VOService, vo_error, vo_routes

__all__ = ["create_app", "serve"]

STATIC = Path(__file__).with_name("static")


def create_app(settings: Settings | None = None, config: WebConfig | None = None) -> Starlette:
    """The application; the pool opens when the server starts and closes when it stops."""
    config = config or WebConfig()
    pool = ReadOnlyPool(settings or load_settings(), config)
    svc = VOService(pool, config)

    def _error(request: Request, exc: ServiceError) -> Response:
        path = request.url.path
        if path.startswith(("/tap", "/scs")):
            return vo_error(exc, scs=path.startswith("/scs"))
        if path.startswith(("/static", "/stamp", "/lightcurve.")):
            return Response(exc.message + "\n", status_code=exc.status,
                            media_type="text/plain; charset=utf-8")  # fmt: skip
        return error_page(exc)

    async def not_found(request: Request, exc) -> Response:
        return _error(request, ServiceError(f"no page {request.url.path[:80]}", 404))

    async def not_allowed(request: Request, exc) -> Response:
        return _error(request, ServiceError(f"method {request.method} not allowed here", 405))

    async def server_error(request: Request, exc) -> Response:
        log.error("request failed: %s (%s)", request.url.path, type(exc).__name__)
        return _error(request, ServiceError("internal error", 500))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        pool.open()
        try:
            yield
        finally:
            pool.close()

    routes = [*page_routes(pool, config), *vo_routes(svc),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]  # fmt: skip
    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed, 500: server_error,
                            Exception: server_error},
        lifespan=lifespan,
    )  # fmt: skip
    app.state.pool, app.state.vo, app.state.config = pool, svc, config
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: Settings | None = None,
    config: WebConfig | None = None,
    workers: int = 1,
) -> None:
    """Run the application with uvicorn until interrupted.

    ``workers`` > 1 starts that many processes (each with its own pool), through
    uvicorn's ``--factory`` import string so that each builds its own app.
    """
    import uvicorn

    if workers > 1:
        import os

        os.environ["PHOTDB_WEB_TIMEOUT"] = str((config or WebConfig()).statement_timeout_s)
        uvicorn.run("photdb.web.app:_factory", factory=True, host=host, port=port,
                    workers=workers, log_level="warning", access_log=False)  # fmt: skip
        return
    uvicorn.run(create_app(settings, config), host=host, port=port, log_level="warning",
                access_log=False)  # fmt: skip


def _factory() -> Starlette:
    import os

    timeout = float(os.environ.get("PHOTDB_WEB_TIMEOUT", WebConfig.statement_timeout_s))
    return create_app(config=WebConfig(statement_timeout_s=timeout))
