"""What every endpoint needs: the Redis connection, who is asking, and errors as clear JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import Redis

from ..queues.errors import (
    IllegalTransition,
    InvalidInput,
    QueueNotEmpty,
    QueueNotFound,
    RedisUnavailable,
    TaskNotFound,
    TrainyardError,
)
from . import auth

COOKIE = "ty_session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiError(Exception):
    """An error answered as ``{"error": {"status", "code", "message", "details"}}``."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def error_body(status: int, code: str, message: str, details: list | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message, "details": details or []}}


def error_response(status: int, code: str, message: str, details: list | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, code, message, details), status_code=status, headers=headers)


# trainyard's own errors -> HTTP status and code
_STATUS: list[tuple[type[TrainyardError], int, str]] = [
    (TaskNotFound, 404, "not_found"),
    (QueueNotFound, 404, "not_found"),
    (IllegalTransition, 409, "conflict"),
    (QueueNotEmpty, 409, "conflict"),
    (InvalidInput, 422, "invalid"),
    (RedisUnavailable, 503, "unavailable"),
]


def trainyard_error(exc: TrainyardError) -> JSONResponse:
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return error_response(status, code, str(exc))
    return error_response(400, "bad_request", str(exc))


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's validation errors as one readable line plus the list of fields."""
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path"):
            where, loc = loc[0], loc[1:]
        else:
            where = "request"
        details.append({"in": where, "field": ".".join(loc), "message": err.get("msg", "invalid")})
    first = details[0] if details else {"in": "request", "field": "", "message": "invalid request"}
    name = f"{first['in']} field {first['field']!r}" if first["field"] else f"the {first['in']}"
    return error_response(422, "invalid", f"invalid {name}: {first['message']}", details)


def conn(request: Request) -> Redis:
    return request.app.state.conn


def _same_origin(request: Request) -> bool:
    """A cookie-authenticated change must come from this app's own pages (CSRF guard)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == request.headers.get("host", "")


def principal(request: Request) -> auth.Principal:
    """The caller from ``Authorization: Bearer <token>`` or the login cookie; 401 otherwise."""
    redis = request.app.state.conn
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
        who = auth.lookup(redis, token.strip())
        if who is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token")
        return who
    session = request.cookies.get(COOKIE)
    if session:
        who = auth.session_principal(redis, session)
        if who is not None:
            if request.method not in SAFE_METHODS and not _same_origin(request):
                raise ApiError(403, "forbidden", "cross-site request refused")
            return who
    raise ApiError(401, "unauthorized", "log in, or send 'Authorization: Bearer <token>'")


def reader(who: auth.Principal = Depends(principal)) -> auth.Principal:
    """Anyone but a trigger-only token (which may fire pipelines and nothing else)."""
    if who.role == "trigger":
        raise ApiError(403, "forbidden", f"user {who.user!r} has the trigger role: it may only trigger pipelines")
    return who


def triggerer(who: auth.Principal = Depends(principal)) -> auth.Principal:
    if who.role not in ("admin", "trigger"):
        raise ApiError(403, "forbidden", f"user {who.user!r} has the read role: this needs an admin or trigger token")
    return who


def admin(who: auth.Principal = Depends(principal)) -> auth.Principal:
    if not who.is_admin:
        raise ApiError(403, "forbidden", f"user {who.user!r} has the read role: this needs an admin token")
    return who


def limit_query(default: int = 50, most: int = 500):
    """Every list endpoint is paginated: ``limit`` (1..most) items from ``offset``."""
    return Query(default, ge=1, le=most, description=f"page size, at most {most}")


OFFSET = Query(0, ge=0, description="items to skip")
