"""The one error of the ClearML layer: a ClearML call that trainyard does not carry."""

from __future__ import annotations

import sys

from ..queues.errors import TrainyardError

# ClearML names people reach for that have no trainyard counterpart (yet), with what to do instead.
KNOWN: dict[str, str] = {
    "Dataset": "version data as task artifacts (upload_artifact) or in your own store",
    "Model": "models are artifacts: task.upload_artifact('model', path)",
    "InputModel": "models are artifacts: Task.get_task(id).artifacts['model'].get_local_copy()",
    "OutputModel": "models are artifacts: task.upload_artifact('model', path)",
    "TriggerScheduler.add_model_trigger": (
        "trainyard has no model registry to publish, tag or archive models in: a model is an artifact of the "
        "task that stores it, so trigger on that task: add_task_trigger(trigger_on_status=['completed'], ...)"
    ),
    "TriggerScheduler.add_dataset_trigger": (
        "trainyard has no datasets (clearml Dataset is not carried): data is an artifact of the task that "
        "stores it, so trigger on that task: add_task_trigger(trigger_on_status=['completed'], ...)"
    ),
    "TriggerScheduler.add_task_trigger(trigger_name=<a regular expression>)": (
        "a trigger_name is matched as a plain part of the task's name, as a regular expression without "
        "pattern characters would be; patterns are not run on the trigger service"
    ),
}


class UnsupportedCall(TrainyardError, NotImplementedError):
    """A ClearML call outside the surface trainyard.clearml supports (the message names it)."""


def unsupported(call: str) -> UnsupportedCall:
    """The error for ``call`` (``"Task.mark_completed"``, ``"Dataset"``)."""
    hint = KNOWN.get(call)
    text = f"trainyard.clearml does not support clearml {call}"
    text += f" ({hint})" if hint else " (see README: Coming from ClearML, for what is carried)"
    return UnsupportedCall(text)


def refuse_unknown(owner: str, name: str):
    """For ``__getattr__``: private names stay AttributeErrors (Python's own probes use them)."""
    if name.startswith("_"):
        raise AttributeError(name)
    raise unsupported(f"{owner}.{name}" if owner else name)


class Refusing(type):
    """Metaclass of the layer's ClearML classes: an unknown class attribute (``Task.query_tasks``)
    raises the one-line UnsupportedCall naming it, not an AttributeError."""

    def __getattr__(cls, name: str):
        refuse_unknown(cls.__name__, name)


def _one_line_hook(kind, value, tb) -> None:
    """An uncaught UnsupportedCall is one line on stderr, not a traceback."""
    if isinstance(value, UnsupportedCall):
        print(f"error: {value}", file=sys.stderr)
        return
    _previous(kind, value, tb)


_previous = sys.excepthook


def install_hook() -> None:
    global _previous
    if sys.excepthook is not _one_line_hook:
        _previous = sys.excepthook
        sys.excepthook = _one_line_hook
