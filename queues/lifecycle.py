"""The one status machine: which action may move a task from which status to which."""

from __future__ import annotations

from .errors import IllegalTransition
from .record import TaskStatus as S

# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[tuple[S, ...], S]] = {
    "enqueue": ((S.DRAFT,), S.QUEUED),
    "dequeue": ((S.QUEUED,), S.DRAFT),
    "start": ((S.QUEUED,), S.RUNNING),  # a worker took it from its queue
    "start_local": ((S.DRAFT,), S.RUNNING),  # run in this process, no queue (local pipelines)
    "complete": ((S.RUNNING,), S.COMPLETED),
    "fail": ((S.RUNNING, S.QUEUED), S.FAILED),
    "abort": ((S.QUEUED, S.RUNNING), S.ABORTED),
    "requeue": ((S.RUNNING,), S.QUEUED),
    "reset": ((S.COMPLETED, S.FAILED, S.ABORTED), S.DRAFT),
}

EDITABLE = (S.DRAFT,)


def target(task_id: str, action: str, current: S) -> S:
    """The status ``action`` leads to from ``current``; raises IllegalTransition when not allowed."""
    allowed, to = TRANSITIONS[action]
    if current not in allowed:
        raise IllegalTransition(task_id, action, current.value, tuple(s.value for s in allowed))
    return to


def check_editable(task_id: str, current: S, what: str = "edit") -> None:
    """Only drafts may have their definition changed."""
    if current not in EDITABLE:
        raise IllegalTransition(task_id, what, current.value, tuple(s.value for s in EDITABLE))
