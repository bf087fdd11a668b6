"""The ASGI app: the HTTP API under ``/api``, the browser app at ``/``, static files, and the
OpenAPI document at ``/api/openapi.json``. Everything but the login page, static files and
``/api/login`` needs a token or a session."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import redis
import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..connection import client_for, redis_url
from ..queues.backend import sentinel
from ..queues.errors import TrainyardError
from . import api_hpo, api_meta, api_pipelines, api_queues, api_services, api_tasks, api_workers, auth, sse
from .deps import COOKIE, ApiError, error_response, reader, trainyard_error, triggerer, validation_error

STATIC = Path(__file__).parent / "static"


def create_app(url: str | None = None) -> FastAPI:
    """The app on the Redis at ``url`` (default: ``TRAINYARD_REDIS_URL`` or the embedded server)."""
    url = url or redis_url(start_embedded=True)
    conn = client_for(url)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if sentinel.is_sentinel_url(url):  # follows a failover, as the sync client does
            app.state.aioredis = sentinel.async_client(url, {"socket_connect_timeout": 5, "socket_timeout": 60})
        else:
            app.state.aioredis = aioredis.from_url(url, socket_connect_timeout=5, socket_timeout=60)
        app.state.hub = sse.EventHub(app.state.aioredis)
        app.state.hub.start()
        try:
            yield
        finally:
            await app.state.hub.stop()
            with contextlib.suppress(asyncio.TimeoutError):  # a connection held by a cancelled stream
                await asyncio.wait_for(app.state.aioredis.aclose(), sse.STOP_WAIT_S)

    app = FastAPI(
        title="trainyard",
        version=__version__,
        description="Tasks, queues, workers and pipelines of a trainyard installation.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the same access check as the rest
    )
    app.state.conn = conn

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(TrainyardError)
    async def _trainyard_error(request: Request, exc: TrainyardError):
        return trainyard_error(exc)

    @app.exception_handler(redis.RedisError)
    async def _redis_error(request: Request, exc: redis.RedisError):
        return error_response(503, "unavailable", f"Redis did not answer: {exc}")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        return validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, code, message)

    app.include_router(api_meta.public)
    guarded = [Depends(reader)]
    for router in (
        api_meta.router,
        api_tasks.router,
        api_queues.router,
        api_workers.router,
        api_services.router,
        api_pipelines.runs_router,
        api_pipelines.files_router,
        api_hpo.router,
        api_hpo.compare_router,
        sse.router,
    ):
        app.include_router(router, dependencies=guarded)
    app.include_router(api_pipelines.trigger_router, dependencies=[Depends(triggerer)])

    @app.get("/api/openapi.json", include_in_schema=False, dependencies=guarded)
    def openapi() -> JSONResponse:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
        return JSONResponse(app.openapi_schema)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/login", include_in_schema=False)
    def login_page() -> Response:
        return FileResponse(STATIC / "login.html", headers=_NO_STORE)

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        session = request.cookies.get(COOKIE)
        if not session or auth.session_principal(conn, session) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / "index.html", headers=_NO_STORE)

    return app


_NO_STORE = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
