"""The old name of ``queue_registry`` (kept while branches that import it land)."""

from .queue_registry import QueuedEntry, QueueInfo, check_queue_name
from .queue_registry import QueueRegistry as Broker

__all__ = ["Broker", "QueueInfo", "QueuedEntry", "check_queue_name"]
