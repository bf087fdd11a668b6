"""``/api/services``, ``/api/alerts`` and ``/api/autoscaler``: the running services, alert rules
and what was sent, the autoscaler's state per queue and its decisions with reasons."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import ValidationError
from redis import Redis

from ..queues import alertstore, scalestore, services
from ..queues.alertstore import AlertRule
from ..queues.backend import queues as queue_lists
from .deps import ApiError, admin, conn, limit_query

router = APIRouter(prefix="/api", tags=["services"])


@router.get("/services", summary="Running services (alerts, autoscaler) with their last heartbeat")
def list_services(redis: Redis = Depends(conn)) -> list[dict[str, Any]]:
    return services.running(redis)


@router.get("/alerts/rules", summary="Alert rules (notify URLs with their secrets masked)")
def list_rules(redis: Redis = Depends(conn)) -> list[dict[str, Any]]:
    return [r.public() for r in alertstore.rules(redis)]


@router.post("/alerts/rules", status_code=201, summary="Add an alert rule", dependencies=[Depends(admin)])
def add_rule(body: dict[str, Any], redis: Redis = Depends(conn)) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if k not in ("id", "created")}
    try:
        rule = AlertRule.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise ApiError(422, "invalid", f"{loc}: {message}" if loc else message) from None
    return alertstore.add_rule(redis, rule).public()


@router.delete("/alerts/rules/{rule_id}", summary="Remove an alert rule", dependencies=[Depends(admin)])
def remove_rule(rule_id: str, redis: Redis = Depends(conn)) -> dict[str, Any]:
    if not alertstore.rule_exists(redis, rule_id):
        raise ApiError(404, "not_found", f"no alert rule {rule_id!r}")
    alertstore.remove_rule(redis, rule_id)
    return {"removed": rule_id}


@router.get("/alerts/history", summary="What the alert services sent (or failed to send), newest first")
def alert_history(limit: int = limit_query(50), redis: Redis = Depends(conn)) -> list[dict[str, Any]]:
    return alertstore.history(redis, limit)


@router.get("/autoscaler", summary="The autoscaler per queue: resources, maximum, running, waiting; its decisions")
def autoscaler(limit: int = limit_query(50), redis: Redis = Depends(conn)) -> dict[str, Any]:
    config = scalestore.load_config(redis)
    instances = scalestore.instances(redis)
    queues = []
    if config is not None:
        for queue, entries in config.queues.items():
            waiting = queue_lists.length(redis, queue)
            for entry in entries:
                resource = config.resources[entry.resource]
                queues.append(
                    {
                        "queue": queue,
                        "waiting": waiting,
                        "resource": entry.resource,
                        "driver": resource.driver,
                        "max": entry.max,
                        "hourly_price": resource.hourly_price,
                        "running": sum(1 for i in instances if i.resource == entry.resource),
                    }
                )
    return {
        "configured": config is not None,
        "idle_timeout_s": config.idle_timeout_s if config else None,
        "spin_up_timeout_s": config.spin_up_timeout_s if config else None,
        "cost_cap_per_hour": config.cost_cap_per_hour if config else None,
        "leader": scalestore.leader(redis),
        "queues": queues,
        "instances": [i.model_dump() for i in instances],
        "decisions": scalestore.decisions(redis, limit),
    }
