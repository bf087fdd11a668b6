"""``/api/login``, ``/api/logout``, ``/api/me`` and ``/api/overview`` (counts for the header)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis

from ..queues.backend import documents, fleet, records
from ..queues.backend import queues as queue_lists
from ..queues.record import TaskStatus
from . import auth
from .deps import COOKIE, ApiError, conn, principal

public = APIRouter(prefix="/api", tags=["access"])
router = APIRouter(prefix="/api", tags=["access"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=200)


@public.post("/login", summary="Trade a token for a browser session cookie")
def login(body: Login, request: Request, response: Response, redis: Redis = Depends(conn)) -> dict[str, Any]:
    who = auth.lookup(redis, body.token.strip())
    if who is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    if who.role == "trigger":
        raise ApiError(403, "forbidden", "a trigger token cannot log in: it may only trigger pipelines")
    session = auth.create_session(redis, who)
    response.set_cookie(
        COOKIE,
        session,
        max_age=auth.SESSION_TTL_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return {"user": who.user, "role": who.role}


@public.post("/logout", summary="End this browser session")
def logout(request: Request, response: Response, redis: Redis = Depends(conn)) -> dict[str, Any]:
    session = request.cookies.get(COOKIE)
    if session:
        auth.drop_session(redis, session)
    response.delete_cookie(COOKIE, path="/")
    return {"logged_out": True}


@router.get("/me", summary="Who this token or session belongs to, and its role")
def me(who: auth.Principal = Depends(principal)) -> dict[str, Any]:
    return {"user": who.user, "role": who.role, "token_id": who.token_id}


@router.get("/overview", summary="Counts: tasks by status, queues, live workers, pipeline runs")
def overview(redis: Redis = Depends(conn)) -> dict[str, Any]:
    statuses = [s.value for s in TaskStatus]
    by_status, total = records.counts(redis, statuses)
    return {
        "tasks": by_status,
        "tasks_total": total,
        "queues": queue_lists.count(redis),
        "workers": fleet.worker_count(redis),
        "runs": documents.run_count(redis),
    }
