"""``trainyard up | down | status``: the Redis that everything runs on."""

from __future__ import annotations

import click

from ..connection import client_for, redact_url, redis_url
from ..embedded import EmbeddedRedis
from ..queues.backend import queues as queue_lists
from ..queues.backend import records, server
from ..settings import settings
from .output import emit_json, json_option, say


@click.command()
@click.option("--print-url", is_flag=True, help="Print the full URL (with password) to export as TRAINYARD_REDIS_URL.")
def up(print_url: bool) -> None:
    """Start the embedded Redis (or check the configured one)."""
    url = redis_url(start_embedded=True)
    client_for(url)
    if print_url:
        say(url)
        return
    where = "configured" if settings().redis_url else f"embedded, data in {settings().embedded_dir}"
    say(f"Redis ready at {redact_url(url)} ({where})")


@click.command()
def down() -> None:
    """Stop the embedded Redis cleanly (its data stays on disk)."""
    if settings().redis_url:
        say("TRAINYARD_REDIS_URL points at an external Redis: nothing to stop")
        return
    stopped = EmbeddedRedis(settings().embedded_dir).stop()
    say("embedded Redis stopped" if stopped else "embedded Redis was not running")


@click.command()
@json_option
def status(as_json: bool) -> None:
    """Show which Redis is used and what it holds (exit 3 when it cannot be reached)."""
    url = redis_url(start_embedded=False)
    if url is None:
        if as_json:
            emit_json({"redis": None, "embedded": True, "running": False})
        else:
            say("embedded Redis is not running (start it with: trainyard up)")
        raise SystemExit(3)
    client = client_for(url)
    info = server.info(client)
    data = {
        "redis": redact_url(url),
        "embedded": not settings().redis_url,
        "running": True,
        "server_version": info.get("redis_version"),
        "used_memory": info.get("used_memory_human"),
        "tasks": records.counts(client, [])[1],
        "queues": queue_lists.count(client),
    }
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        say(f"{key:>15}: {value}")
