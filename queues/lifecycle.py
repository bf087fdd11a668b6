"""The one state machine: each transition declared once, with its guard and side effects.

A transition is executed as one backend call (``backend.records.change``): inside one Redis
transaction, guarded by the record's status read under WATCH, it writes the record and its
indexes (status, queue, and the queue's in-flight set while running), mirrors the status onto the
RQ job, runs the declared side effects and appends the event. ``docs/design.md`` has the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import IllegalTransition
from .record import TaskStatus as S


class Effect(str, Enum):
    """A side effect of a transition, besides record, indexes, RQ job status and event."""

    PUSH = "push"  # RQ job written as queued; id inserted in its queue by priority (front when asked)
    PUSH_FRONT = "push_front"  # the same, ahead of every waiting task (a task going back)
    UNQUEUE = "unqueue"  # id leaves its queue list (when it was waiting there)
    DROP_CLAIM = "drop_claim"  # the worker's claim and the queue's in-flight entry go
    DROP_LOG = "drop_log"  # the log and metric streams are deleted (the results go with the record's)


@dataclass(frozen=True)
class Transition:
    """``action`` moves a task from one of ``sources`` to ``target`` with ``effects``."""

    action: str
    sources: tuple[S, ...]
    target: S
    effects: tuple[Effect, ...] = ()
    event: str = "status"  # the event's kind
    by: str = "user"  # who takes it: user | worker | reaper | controller
    why: str = ""


FINAL = (S.COMPLETED, S.FAILED, S.ABORTED)

TABLE: tuple[Transition, ...] = (
    Transition("enqueue", (S.DRAFT,), S.QUEUED, (Effect.PUSH,), why="a draft is put on a queue"),
    Transition("dequeue", (S.QUEUED,), S.DRAFT, (Effect.UNQUEUE,), why="taken off its queue"),
    Transition("start", (S.QUEUED,), S.RUNNING, by="worker", why="the worker that claimed it starts it"),
    Transition("start_local", (S.DRAFT,), S.RUNNING, by="controller", why="run in this process (local pipelines)"),
    Transition("complete", (S.RUNNING,), S.COMPLETED, (Effect.DROP_CLAIM,), by="worker", why="exit 0"),
    Transition(
        "fail", (S.RUNNING, S.QUEUED), S.FAILED, (Effect.DROP_CLAIM,), by="worker, reaper", why="no retries left"
    ),
    Transition(
        "abort",
        (S.QUEUED, S.RUNNING),
        S.ABORTED,
        (Effect.UNQUEUE, Effect.DROP_CLAIM),
        by="user, worker",
        why="a queued task at once; a running one by its worker after an abort request",
    ),
    Transition(
        "requeue",
        (S.RUNNING,),
        S.QUEUED,
        (Effect.PUSH_FRONT, Effect.DROP_CLAIM),
        by="worker, reaper",
        why="a retry (retries left), a stopped worker, a lost worker",
    ),
    Transition(
        "return",
        (S.QUEUED,),
        S.QUEUED,
        (Effect.DROP_CLAIM, Effect.PUSH_FRONT),
        event="requeued",
        by="reaper",
        why="claimed, never started, its worker gone: back to the front",
    ),
    Transition("reset", FINAL, S.DRAFT, (Effect.DROP_LOG,), why="a finished task back to draft, results cleared"),
)

TRANSITIONS: dict[str, Transition] = {t.action: t for t in TABLE}

EDITABLE = (S.DRAFT,)
DELETABLE = (S.DRAFT, *FINAL)  # a queued or running task must be dequeued or aborted first
USER_ACTIONS = ("enqueue", "dequeue", "abort", "reset")


def transition(task_id: str, action: str, current: S) -> Transition:
    """The transition ``action`` from ``current``; raises IllegalTransition when not allowed."""
    found = TRANSITIONS[action]
    if current not in found.sources:
        raise IllegalTransition(task_id, action, current.value, tuple(s.value for s in found.sources))
    return found


def target(task_id: str, action: str, current: S) -> S:
    """The status ``action`` leads to from ``current``; raises IllegalTransition when not allowed."""
    return transition(task_id, action, current).target


def may_retry(attempt: int, retries: int) -> bool:
    """The one retry rule: after its ``attempt``-th attempt failed or was lost, a task (or a
    pipeline step) with ``retries`` runs again while ``attempt <= retries``."""
    return attempt <= retries


def allowed_actions(current: S) -> list[str]:
    """What a user may do to a task in status ``current`` (the web app's buttons)."""
    out = [a for a in USER_ACTIONS if current in TRANSITIONS[a].sources]
    out.append("clone")
    if current in DELETABLE:
        out.append("delete")
    return out


def check_editable(task_id: str, current: S, what: str = "edit") -> None:
    """Only drafts may have their definition changed."""
    if current not in EDITABLE:
        raise IllegalTransition(task_id, what, current.value, tuple(s.value for s in EDITABLE))


def check_deletable(task_id: str, current: S) -> None:
    if current not in DELETABLE:
        raise IllegalTransition(task_id, "delete", current.value, tuple(s.value for s in DELETABLE))
