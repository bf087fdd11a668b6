"""The default Redis connection, provided by the front door (``trainyard.connection``).

``queues`` never imports the front door; the front door registers a factory here instead, so
``Task.get(...)`` works without passing a connection while the import direction stays one-way.
"""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

_factory: Callable[[], Redis] | None = None


def use_connection_factory(factory: Callable[[], Redis]) -> None:
    """Register the callable that returns the process's default Redis connection."""
    global _factory
    _factory = factory


def default_connection() -> Redis:
    """The default connection (the configured Redis, or the embedded one)."""
    if _factory is None:
        raise RuntimeError("no Redis connection factory registered: import trainyard first")
    return _factory()


def resolve(connection: Redis | None) -> Redis:
    """Return ``connection`` or, when None, the default connection."""
    return connection if connection is not None else default_connection()
