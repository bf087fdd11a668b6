"""The Redis server itself: reachability, facts, shutdown."""

from __future__ import annotations

from redis import Redis


def ping(conn: Redis) -> None:
    """Raise redis-py's error when the server cannot be reached (or refuses our credentials)."""
    conn.ping()


def info(conn: Redis, section: str | None = None) -> dict:
    """The server's INFO (one section when given)."""
    return conn.info(section) if section else conn.info()


def uptime_s(conn: Redis) -> int:
    return int(conn.info("server").get("uptime_in_seconds", 0))


def shutdown(conn: Redis) -> None:
    """Ask the server to stop (AOF flushed)."""
    conn.shutdown()
