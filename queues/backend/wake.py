"""Wake-ups without broadcast (``wake.lua``): queue bells, worker inboxes and GPU waiters.

An idle worker blocks in one ``BLPOP`` on its own inbox and on the bells of the queues it serves.
Each task that joins a queue adds one token to the queue's bell (``queue.lua``), and Redis hands
a token to exactly one blocked worker: one task wakes one worker. Control (abort, drain, stop)
and "a GPU or a slot may be free now" go to one worker's inbox. A task's end rings its queue's
bell only when tasks wait there, and wakes only the workers of its host waiting for a GPU.
"""

from __future__ import annotations

from redis import Redis

from .. import keys
from . import scripts

INBOX_TTL_S = 86400  # an inbox nobody reads (its worker died) goes away by itself
SOCKET_MARGIN_S = 5.0  # a blocking wait ends this long before the client's socket timeout


def wait(conn: Redis, worker: str, queues: list[str], timeout_s: float) -> tuple[str, str] | None:
    """Block until a message reaches ``worker``'s inbox (``("inbox", message)``) or a token rings
    one of ``queues`` (``("bell", queue)``); None after ``timeout_s``, or sooner: the wait never
    reaches the client's socket timeout, where the reply of a wait that simply ran out would race
    the socket's own deadline and could end as a read timeout (a dropped connection, a reconnect).
    The inbox is read first."""
    bells = {keys.bell(q): q for q in queues}
    got = conn.blpop([keys.inbox(worker), *bells], timeout=max(0.01, min(timeout_s, _longest_block_s(conn))))
    if got is None:
        return None
    key, value = got[0].decode(), got[1].decode("utf-8", "replace")
    if key in bells:
        return "bell", bells[key]
    return "inbox", value


def _longest_block_s(conn: Redis) -> float:
    """How long one blocking command may wait on ``conn``: short of its socket timeout (if any)."""
    socket_s = conn.connection_pool.connection_kwargs.get("socket_timeout")
    if not socket_s:
        return float("inf")
    return max(socket_s / 2, socket_s - SOCKET_MARGIN_S)


def ring(conn: Redis, queue: str, client=None) -> None:
    """Add a token to ``queue``'s bell if it holds more tasks than tokens (on ``client``, a pipeline, when given)."""
    scripts.run(conn, "wake", "ring", [keys.rq_queue(queue), keys.bell(queue)], [], client=client)


def notify(conn: Redis, worker: str, message: str, client=None) -> None:
    """Put ``message`` in ``worker``'s inbox (on ``client``, a pipeline, when given)."""
    target = client if client is not None else conn.pipeline(transaction=False)
    target.lpush(keys.inbox(worker), message)
    target.ltrim(keys.inbox(worker), 0, 99)
    target.expire(keys.inbox(worker), INBOX_TTL_S)
    if client is None:
        target.execute()


def clear_inbox(conn: Redis, worker: str) -> None:
    """Forget what a worker of that name was sent before it started."""
    conn.delete(keys.inbox(worker))


def wait_for_gpu(conn: Redis, host: str, worker: str) -> None:
    """Register ``worker`` as waiting for a GPU of ``host``: the next release there wakes it."""
    conn.sadd(keys.gpu_waiters(host), worker)


def wake_gpu_waiters(conn: Redis, host: str, client=None) -> None:
    """A GPU of ``host`` came free: wake the workers of that host waiting for one (only them)."""
    scripts.run(conn, "wake", "wake_all", [keys.gpu_waiters(host)], [keys.inbox(""), "gpu", INBOX_TTL_S], client=client)
