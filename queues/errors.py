"""Errors raised by trainyard; each carries one line that names what is wrong."""

from __future__ import annotations


class TrainyardError(Exception):
    """Base class: the message is shown to users as-is, on one line."""

    exit_code = 1


class InvalidInput(TrainyardError):
    """A value given by the user is malformed (parameter, name, spec)."""


class TaskNotFound(TrainyardError):
    """No task with that id, or no task matching project and name."""


class PipelineNotFound(TaskNotFound):
    """No pipeline run with that id, or no registered pipeline file with that name (a TaskNotFound
    to callers that treat every missing thing alike: the web app's 404)."""


class QueueNotFound(TrainyardError):
    """The queue does not exist (and was not asked to be created)."""


class QueueNotEmpty(TrainyardError):
    """A queue still holds tasks and the caller did not force the operation."""


class IllegalTransition(TrainyardError):
    """A status change the task's state machine does not allow."""

    def __init__(self, task_id: str, action: str, current: str, allowed: tuple[str, ...]):
        self.task_id, self.action, self.current, self.allowed = task_id, action, current, allowed
        allowed_text = ", ".join(allowed) if allowed else "no state"
        super().__init__(f"cannot {action} task {task_id}: it is {current} (allowed from: {allowed_text})")


class RedisUnavailable(TrainyardError):
    """The configured Redis cannot be reached."""

    exit_code = 3


class WaitTimeout(TrainyardError):
    """A wait ran out of time before the task reached a final state."""

    exit_code = 4
