"""Writing new task records: every key of every task in one Lua script call (one round trip).

A new task is its record, its indexes, its name hint and name index entries, a ``created``
event and, when it is born queued, its RQ job hash and its place in the queue. Sending those as
~10 commands per task made the client pack and parse more than Redis worked; here the client
sends one ``EVALSHA`` whose arguments it built once per task, and the script does the same
writes (the sorted-set and hash ones batched per key; ``backend.records.change`` and
``backend.streams.publish`` write the same shapes one at a time).

The script first checks that no id is taken, so a refused batch writes nothing; it runs
atomically, like the MULTI it replaces (a big batch holds Redis as long as that did).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from redis import Redis

from . import events, keys, rqjob
from .backend import records as records_backend
from .backend import scripts
from .record import TaskRecord


@dataclass(frozen=True)
class Born:
    """Where new records are born queued: the queue, their priority and the enqueue time."""

    queue: str
    priority: int
    now: float


def create(conn: Redis, records: Sequence[TaskRecord], index_keys, born: Born | None = None) -> bool:
    """Write ``records`` (new ids) with everything that goes with them; False when an id is taken
    (then nothing was written). ``index_keys(record)`` gives the sorted-set indexes of a record."""
    if not records:
        return True
    per_task = [index_keys(r) for r in records]
    common = set.intersection(*per_task)
    job: list = []
    queue_keys: list[str] = []
    if born is not None:
        queue_keys = [keys.rq_queue(born.queue), keys.priorities(born.queue), keys.RQ_QUEUES, keys.bell(born.queue)]
        for field, value in rqjob.queued_fields(born.queue, born.now).items():
            job += [field, value]
    args: list = [
        keys.task(""),
        keys.rq_job(""),
        keys.NAMES,
        keys.NAME_LEX,
        keys.NAME_REV,
        keys.EVENTS,
        events.STREAM_MAXLEN,
        born.priority if born is not None else 0,
        len(records),
        len(common),
        *sorted(common),
        len(job),
        *job,
    ]
    for record, own_keys in zip(records, per_task):
        extra = own_keys - common
        if born is not None:
            fields = rqjob.own_fields(record.id, record.name)
            data, description = fields["data"], fields["description"]
        else:
            data = description = ""
        args += [
            record.id,
            record.to_json(),
            repr(record.created),
            record.status.value,
            record.project,
            record.execution.queue or "",
            keys.name_field(record.project, record.name),
            keys.name_member(record.name, record.id),
            keys.name_member_reversed(record.name, record.id),
            data,
            description,
            len(extra),
            *extra,
        ]
    while True:
        taken = int(scripts.run(conn, "queue", "create", queue_keys, args))
        if taken and records_backend.record_json(conn, records[taken - 1].id) == records[taken - 1].to_json():
            taken = 0  # this very batch, written by a call whose reply was lost (then retried)
        if taken:
            return False
        first = records[0]
        if records_backend.acknowledged(conn, keys.task(first.id), first.to_json()):
            return True
        # a failover lost the batch before a replica had it (all or nothing: it is one script): again


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of records is built and written.

    A batch allocates many objects that all stay alive (the records and their nested models),
    so every collection pass walks a growing heap and finds nothing to free: with thousands of
    records that was most of the time spent building them. Reference counting still frees as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
