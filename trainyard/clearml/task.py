"""ClearML's ``Task`` over trainyard's own ``Task`` (records in Redis) and ``current_task()`` (the
run folder of a running task). Nothing here stores or runs anything by itself: every call maps
onto the native API.

A ClearML ``Task`` object is one of two things:

- the task this process runs (``Task.init`` / ``Task.current_task``): reports go through the run
  folder, as any trainyard task's do. Under a worker it attaches to the running task; outside one,
  ``Task.init`` registers the script as a task and runs it here (:mod:`trainyard.attached`).
- a handle on any task (``Task.get_task``, ``Task.clone``, ``Task.get_tasks``): reads and edits
  its record.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from ..queues.errors import InvalidInput, TaskNotFound
from ..queues.record import TaskStatus
from ..queues.task import Task as NativeTask
from ..runtime.task_api import RunContext, current_task
from ..settings import settings
from . import artifacts as codec
from . import params, reuse
from .errors import Refusing, install_hook, refuse_unknown, unsupported
from .figures import capture_pyplot
from .logger import Logger

STATUS = {  # trainyard status -> ClearML's
    TaskStatus.DRAFT: "created",
    TaskStatus.QUEUED: "queued",
    TaskStatus.RUNNING: "in_progress",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.ABORTED: "stopped",
}
FROM_CLEARML_STATUS = {value: key.value for key, value in STATUS.items()}
MAX_TASKS = 500  # Task.get_tasks returns at most this many, as ClearML does


class TaskTypes(str, Enum):
    training = "training"
    testing = "testing"
    inference = "inference"
    data_processing = "data_processing"
    application = "application"
    monitor = "monitor"
    controller = "controller"
    optimizer = "optimizer"
    service = "service"
    qc = "qc"
    custom = "custom"

    def __str__(self) -> str:
        return self.value


class TaskStatusEnum(str, Enum):
    created = "created"
    queued = "queued"
    in_progress = "in_progress"
    stopped = "stopped"
    completed = "completed"
    failed = "failed"


_current: Task | None = None
_attached = None  # the AttachedRun of a script registered by Task.init outside a worker


def _wanted(switch: bool | Mapping, framework: str) -> bool:
    """ClearML's ``auto_connect_frameworks``: a bool, or a mapping of framework names to bools."""
    return bool(switch.get(framework, True)) if isinstance(switch, Mapping) else bool(switch)


def _inside_worker() -> bool:
    """A worker runs this process (not a run attached by Task.init here)."""
    return settings().run_dir is not None and _attached is None


class Artifact:
    """ClearML's artifact entry: ``url``, ``size``, ``hash``, ``metadata``; ``get()`` and ``get_local_copy()``."""

    def __init__(self, native: Any):
        self._native = native

    name = property(lambda self: self._native.name)
    url = property(lambda self: self._native.uri)
    size = property(lambda self: self._native.size)
    hash = property(lambda self: self._native.sha256)
    metadata = property(lambda self: dict(self._native.metadata))
    type = property(lambda self: self._native.metadata.get("clearml_type", "custom"))

    def get_local_copy(self, extract_archive: bool = True, raise_on_error: bool = False, force_download: bool = False):
        from .storage import StorageManager

        return StorageManager.get_local_copy(self.url, extract_archive=extract_archive, force_download=force_download)

    def get(self, force_download: bool = False, deserialization_function=None, allow_pickle: bool = False) -> Any:
        """The stored object (numpy, pandas, JSON, text, image, a tuple of them), else a local path.
        A pickle is loaded only with ``allow_pickle=True`` (or ``TRAINYARD_CLEARML_PICKLE=1``)."""
        path = Path(self.get_local_copy(extract_archive=False, force_download=force_download))
        if deserialization_function is not None:
            return deserialization_function(path.read_bytes())
        return codec.read(path, allow_pickle=allow_pickle)

    def __repr__(self) -> str:
        return f"<Artifact {self.name} {self.url}>"

    def __getattr__(self, name: str):
        refuse_unknown("Artifact", name)


class Task(metaclass=Refusing):
    """ClearML's Task: see the module docstring for the two kinds of object it can be."""

    TaskTypes = TaskTypes
    TaskStatusEnum = TaskStatusEnum

    def __init__(self, native: NativeTask | None = None, context: RunContext | None = None):
        self._native = native
        self._ctx = context
        self._logger: Logger | None = None
        self._configuration: dict[str, Any] = {}  # connected locally, written when it becomes a draft

    # -- creation ----------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: TaskTypes | str = TaskTypes.training,
        tags: Iterable[str] | None = None,
        reuse_last_task_id: bool | str = True,
        continue_last_task: bool | str | int = False,
        output_uri: str | bool | None = None,
        auto_connect_arg_parser: bool | Mapping = True,
        auto_connect_frameworks: bool | Mapping = True,
        auto_resource_monitoring: bool | Mapping = True,
        auto_connect_streams: bool | Mapping = True,
        deferred_init: bool = False,
        **unsupported_kwargs: Any,
    ) -> Task:
        """Under a worker: the running task. Elsewhere: register this script as a task (its code,
        commit, diff, requirements) and run it here, reporting as it goes."""
        global _current, _attached
        if unsupported_kwargs:
            raise unsupported(f"Task.init({', '.join(sorted(unsupported_kwargs))}=...)")
        install_hook()
        if _current is not None:
            return _current
        if settings().run_dir is not None:
            task = cls(context=current_task())
        else:
            script = _main_script()
            project, name, kind = project_name or "default", task_name or script.stem, str(task_type)
            last = reuse.reusable(project, name, kind, reuse_last_task_id)
            native = reuse.reuse(last, script, list(tags or ())) if last is not None else None
            if native is None:
                native = NativeTask.create(name, project, script=script, task_type=kind, tags=list(tags or ()))
            reuse.remember(project, name, kind, native.id)
            from ..attached import AttachedRun

            _attached = AttachedRun(native.connection, native.id).start()
            task = cls(native=native, context=current_task())
        _current = task
        if auto_connect_arg_parser:
            _patch_argparse()
        if _wanted(auto_connect_frameworks, "matplotlib"):
            capture_pyplot()
        return task

    @classmethod
    def current_task(cls) -> Task | None:
        """The task this process runs (None before Task.init, unless a worker runs it)."""
        global _current
        if _current is None and settings().run_dir is not None:
            _current = cls(context=current_task())
        return _current

    # -- lookups -----------------------------------------------------------------------------
    @classmethod
    def get_task(
        cls,
        task_id: str | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        tags: Iterable[str] | None = None,
        allow_archived: bool = True,
        task_filter: Mapping | None = None,
    ) -> Task:
        """By id, or the newest task named exactly ``task_name`` in ``project_name``."""
        if task_id:
            return cls(NativeTask.get(str(task_id)))
        if not task_name:
            raise InvalidInput("Task.get_task needs task_id, or task_name (and project_name)")
        if tags:
            exact = f"^{re.escape(task_name)}$"
            found = cls.get_tasks(project_name=project_name, task_name=exact, tags=tags)
            if not found:
                raise TaskNotFound(f"no task named {task_name!r} with tags {list(tags)} in project {project_name!r}")
            return found[0]
        return cls(NativeTask.get_task(project=project_name or "default", name=task_name))

    @classmethod
    def get_tasks(
        cls,
        task_ids: Iterable[str] | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        tags: Iterable[str] | None = None,
        allow_archived: bool = True,
        task_filter: Mapping | None = None,
    ) -> list[Task]:
        """Newest first, at most 500; ``task_name`` is a regular expression (ClearML's meaning),
        ``tags`` with ``-tag`` excluding; ``task_filter`` may hold ``status``, ``type`` and ``parent``."""
        if task_ids:
            return [cls(NativeTask.get(str(i))) for i in task_ids]
        task_filter = dict(task_filter or {})
        unknown = set(task_filter) - {"status", "type", "parent", "order_by"}
        if unknown:
            raise unsupported(f"Task.get_tasks(task_filter={{{', '.join(sorted(unknown))}: ...}})")
        statuses = task_filter.get("status")
        if isinstance(statuses, str):
            statuses = [statuses]
        wanted_status = [FROM_CLEARML_STATUS.get(s, s) for s in statuses] if statuses else None
        types = task_filter.get("type")
        types = {types} if isinstance(types, str) else set(types or ())
        pattern = re.compile(task_name) if task_name else None
        include = [t for t in (tags or ()) if not t.startswith("-")]
        exclude = [t[1:] for t in (tags or ()) if t.startswith("-")]
        found: list[Task] = []
        offset = 0
        while len(found) < MAX_TASKS:
            page = NativeTask.list(
                project=project_name,
                status=wanted_status,
                tag=include[0] if include else None,
                parent=task_filter.get("parent"),
                limit=200,
                offset=offset,
            )
            for native in page:
                record = native.data
                if pattern and not pattern.search(record.name):
                    continue
                if not all(t in record.tags for t in include) or any(t in record.tags for t in exclude):
                    continue
                if types and record.type.value not in types:
                    continue
                found.append(cls(native))
            if len(page) < 200:
                break
            offset += 200
        return found[:MAX_TASKS]

    @classmethod
    def clone(
        cls,
        source_task: Task | str | None = None,
        name: str | None = None,
        comment: str | None = None,
        parent: str | None = None,
        project: str | None = None,
    ) -> Task:
        """A draft copy of ``source_task`` (a Task or its id); its parent is the source."""
        native = _native_of(source_task)
        return cls(native.clone(name=name, project=project, comment=comment))

    @classmethod
    def enqueue(
        cls, task: Task | str, queue_name: str | None = None, queue_id: str | None = None, force: bool = False
    ) -> dict:
        """Put a draft on ``queue_name`` (queue ids are queue names in trainyard); ``force`` resets a
        finished task first. Returns ClearML's answer shape."""
        if queue_name and queue_id:
            raise InvalidInput("Task.enqueue takes queue_name or queue_id, not both")
        queue = queue_name or queue_id
        if not queue:
            raise InvalidInput("Task.enqueue needs queue_name")
        native = _native_of(task).refresh()
        if force and native.status not in (TaskStatus.DRAFT, TaskStatus.QUEUED, TaskStatus.RUNNING):
            native.reset()
        native.enqueue(queue)
        return {"queued": 1, "updated": 1, "fields": {"status": "queued", "execution.queue": queue}}

    @classmethod
    def dequeue(cls, task: Task | str) -> dict:
        _native_of(task).dequeue()
        return {"dequeued": 1, "updated": 1, "fields": {"status": "created"}}

    # -- identity ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._ctx.id if self._ctx is not None else self._require_native().id

    @property
    def name(self) -> str:
        return self._ctx.name if self._ctx is not None and self._native is None else self._require_native().name

    @property
    def project(self) -> str:
        """ClearML gives a project id; trainyard's projects are their names."""
        return self.get_project_name()

    def get_project_name(self) -> str:
        if self._ctx is not None and self._native is None:
            return self._ctx.project
        return self._require_native().project

    @property
    def status(self) -> str:
        """ClearML's status name, read afresh (``created``, ``queued``, ``in_progress``, ``completed``,
        ``failed``, ``stopped``)."""
        if self._native is None:
            return "in_progress"
        return STATUS[self._native.refresh().status]

    def get_status(self) -> str:
        return self.status

    @property
    def parent(self) -> str | None:
        return self._require_native().parent

    @property
    def task_type(self) -> str:
        return self._require_native().data.type.value

    def get_tags(self) -> list[str]:
        return self._require_native().refresh().tags

    def add_tags(self, tags: str | Iterable[str]) -> None:
        self._require_native().add_tags(*([tags] if isinstance(tags, str) else list(tags)))

    @property
    def comment(self) -> str | None:
        return self._require_native().data.comment

    def set_comment(self, comment: str) -> None:
        self._require_native().set_comment(comment)

    def reload(self) -> Task:
        if self._native is not None:
            self._native.refresh()
        return self

    @property
    def data(self) -> Any:
        """The trainyard record (not ClearML's server object)."""
        return self._require_native().refresh().data

    # -- parameters --------------------------------------------------------------------------
    def connect(self, mutable: Any, name: str | None = None, ignore_remote_overrides: bool = False) -> Any:
        """Record the defaults and apply the task's values to ``mutable`` in place: a dict, an
        argparse namespace or an object's public attributes. Returns ``mutable``."""
        section = name or ("Args" if isinstance(mutable, argparse.Namespace) else params.DEFAULT_SECTION)
        if isinstance(mutable, dict):
            self._connect_items(mutable, section, mutable.__setitem__, ignore_remote_overrides)
            return mutable
        if isinstance(mutable, argparse.ArgumentParser):
            raise unsupported("Task.connect(ArgumentParser) (call parse_args(): arguments are connected then)")
        if isinstance(mutable, argparse.Namespace) or hasattr(mutable, "__dict__"):
            values = {k: v for k, v in vars(mutable).items() if not k.startswith("_") and not callable(v)}
            self._connect_items(values, section, lambda k, v: setattr(mutable, k, v), ignore_remote_overrides)
            return mutable
        raise unsupported(f"Task.connect({type(mutable).__name__})")

    def _connect_items(self, values: Mapping[str, Any], section: str, assign, ignore_overrides: bool) -> None:
        context = self._running()
        defaults = dict(values)
        given = context.connect(dict(defaults), section)
        if ignore_overrides:
            return
        for key, default in defaults.items():
            value = given.get(key, default)
            if value is not default:
                assign(key, params.cast(value, default, f"{section}/{key}"))

    def connect_configuration(self, configuration: Any, name: str | None = None, description: str | None = None) -> Any:
        """A configuration object: a dict is refilled in place with the task's copy; a path gives
        the path of a local file holding the task's text."""
        name = name or params.DEFAULT_SECTION
        context = self._running()
        stored = context.get_configuration().get(name) if not context.offline else None
        if isinstance(configuration, dict):
            if isinstance(stored, dict) and _inside_worker():
                configuration.clear()
                configuration.update(stored)
            else:
                self._configuration[name] = dict(configuration)
            return configuration
        if isinstance(configuration, (str, Path)):
            if isinstance(stored, str) and _inside_worker():
                fd, path = tempfile.mkstemp(prefix="config-", suffix=Path(str(configuration)).suffix)
                with os.fdopen(fd, "w") as out:
                    out.write(stored)
                return path
            self._configuration[name] = Path(configuration).read_text()
            return configuration
        raise unsupported(f"Task.connect_configuration({type(configuration).__name__})")

    def get_configuration_object(self, name: str) -> str | None:
        value = self._require_native().refresh().data.configuration.get(name)
        return value if value is None or isinstance(value, str) else params.to_string(value)

    def get_configuration_object_as_dict(self, name: str) -> dict | None:
        value = self._require_native().refresh().data.configuration.get(name)
        return value if isinstance(value, dict) or value is None else None

    def set_configuration_object(self, name: str, config_text: str | None = None, config_dict: dict | None = None):
        self._require_native().set_configuration(name, config_dict if config_dict is not None else config_text)

    def get_parameters(self, backwards_compatibility: bool = True, cast: bool = False) -> dict[str, Any]:
        """A flat ``{"Section/name": value}``: ClearML's strings, or the typed values with ``cast=True``."""
        values = self._parameters()
        return dict(values) if cast else params.strings(values)

    def get_parameter(self, name: str, default: Any = None, cast: bool = False) -> Any:
        values = self._parameters()
        key = params.full_key(name)
        if key not in values:
            return default
        return values[key] if cast else params.to_string(values[key])

    def get_parameters_as_dict(self, cast: bool = False) -> dict[str, dict[str, Any]]:
        nested: dict[str, dict[str, Any]] = {}
        for key, value in self.get_parameters(cast=cast).items():
            section, _, rest = key.partition("/")
            nested.setdefault(section, {})[rest] = value
        return nested

    def _parameters(self) -> dict[str, Any]:
        if self._native is not None:
            return self._native.refresh().get_parameters()
        return self._running().get_parameters()

    def set_parameters(self, *args: Mapping[str, Any], **kwargs: Any) -> None:
        """Replace the parameters of a draft (strings written back keep the type they had)."""
        native = self._require_native()
        given: dict[str, Any] = {}
        for mapping in args:
            given.update(mapping)
        given.update(kwargs)
        current = native.refresh().get_parameters()
        native.set_parameters(params.merge(given, current))

    def update_parameters(self, *args: Mapping[str, Any], **kwargs: Any) -> None:
        native = self._require_native()
        given: dict[str, Any] = {}
        for mapping in args:
            given.update(mapping)
        given.update(kwargs)
        native.update_parameters(params.merge(given, native.refresh().get_parameters()))

    def set_parameter(self, name: str, value: Any, description: str | None = None, value_type: Any = None) -> None:
        self.update_parameters({name: value})

    def delete_parameter(self, name: str) -> bool:
        self._require_native().delete_parameter(params.full_key(name))
        return True

    def set_parameters_as_dict(self, dictionary: Mapping[str, Mapping[str, Any]]) -> None:
        flat = {f"{section}/{key}": value for section, items in dictionary.items() for key, value in items.items()}
        self.set_parameters(flat)

    # -- running -----------------------------------------------------------------------------
    def execute_remotely(self, queue_name: str | None = None, clone: bool = False, exit_process: bool = True):
        """Under a worker: nothing. Here: stop running locally, leave the task a draft (with what
        it connected so far), enqueue it (or a clone) on ``queue_name`` when given, and exit."""
        global _attached, _current
        if _inside_worker() or _attached is None or self is not _current:
            return None
        native = self._require_native()
        _attached.end()
        native.refresh()
        if native.status != TaskStatus.DRAFT:
            native.reset()
        for key, value in self._configuration.items():
            native.set_configuration(key, value)
        target = native.clone() if clone else native
        if queue_name:
            target.enqueue(queue_name)
        _attached, _current = None, None
        if exit_process:
            sys.stdout.flush()
            sys.exit(0)
        return Task(target)

    def close(self) -> None:
        """End a task run here (completed); under a worker the task ends with its process."""
        global _attached, _current
        if _attached is not None and self is _current:
            _attached.end()
            _attached, _current = None, None

    def wait_for_status(
        self,
        status: Iterable[str] = ("completed", "stopped", "closed"),
        raise_on_status: Iterable[str] = ("failed",),
        check_interval_sec: float = 60.0,
    ) -> None:
        """Block until the task reaches ``status`` (event-driven: ``check_interval_sec`` is not used)."""
        wanted = [FROM_CLEARML_STATUS[s] for s in status if s in FROM_CLEARML_STATUS]
        bad = [FROM_CLEARML_STATUS[s] for s in raise_on_status if s in FROM_CLEARML_STATUS]
        native = self._require_native().wait(statuses=[*wanted, *bad])
        if native.status.value in bad:
            raise RuntimeError(f"task {native.id} is {STATUS[native.status]}")

    # -- reporting ---------------------------------------------------------------------------
    def get_logger(self) -> Logger:
        if self._logger is None:
            self._logger = Logger(self._running())
        return self._logger

    @property
    def logger(self) -> Logger:
        return self.get_logger()

    def upload_artifact(
        self,
        name: str,
        artifact_object: Any,
        metadata: Mapping | None = None,
        delete_after_upload: bool = False,
        auto_pickle: bool | None = None,
        preview: Any = None,
        wait_on_upload: bool = False,
        extension_name: str | None = None,
        serialization_function=None,
        retries: int = 0,
        sort_keys: bool = True,
    ) -> bool:
        """Store ``artifact_object`` in a safe format (see :mod:`trainyard.clearml.artifacts`);
        a path (str or Path) that exists is stored as that file or folder. Uploads finish before
        this returns."""
        context = self._running()
        meta = dict(metadata or {})
        if (
            isinstance(artifact_object, (str, Path))
            and len(str(artifact_object)) < 2048
            and Path(artifact_object).exists()
        ):
            meta.setdefault("clearml_type", "folder" if Path(artifact_object).is_dir() else "file")
            context.upload_artifact(name, str(artifact_object), meta)
            if delete_after_upload and Path(artifact_object).is_file():
                Path(artifact_object).unlink()
            return True
        with tempfile.TemporaryDirectory(prefix="artifact-") as folder:
            if serialization_function is not None:
                path = Path(folder) / f"{name}.{extension_name or 'bin'}"
                path.write_bytes(serialization_function(artifact_object))
            else:
                path = codec.write(artifact_object, Path(folder), name, bool(auto_pickle))
            meta.setdefault("clearml_type", type(artifact_object).__name__)
            context.upload_artifact(name, str(path), meta)
        return True

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """The task's stored artifacts by name (read afresh; read-only)."""
        native = self._require_native().refresh()
        return {name: Artifact(a) for name, a in native.artifacts.items()}

    def get_reported_console_output(self, number_of_reports: int = 1) -> list[str]:
        """The last lines of the task's console output, as one report (ClearML returns chunks)."""
        lines = self._require_native().get_log(streams=("out", "err"))
        return ["\n".join(lines)] if lines else []

    def get_last_scalar_metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{title: {series: {"last", "min", "max"}}}``."""
        metrics = self._require_native().refresh().metrics
        return {
            title: {name: {"last": s.last, "min": s.min, "max": s.max} for name, s in series.items()}
            for title, series in metrics.items()
        }

    def get_reported_scalars(self) -> dict[str, dict[str, dict[str, list]]]:
        """``{title: {series: {"x": [steps], "y": [values]}}}``."""
        from ..queues import logs

        native = self._require_native()
        out: dict[str, dict[str, dict[str, list]]] = {}
        for point in logs.metric_points(native.connection, native.id):
            entry = out.setdefault(point["title"], {}).setdefault(point["series"], {"x": [], "y": []})
            entry["x"].append(point["step"])
            entry["y"].append(point["value"])
        return out

    def set_progress(self, progress: int) -> None:
        self._running().set_output("progress", progress)

    # -- helpers -----------------------------------------------------------------------------
    def _running(self) -> RunContext:
        if self._ctx is None:
            raise InvalidInput(
                f"task {self.id} is not the task this process runs: report from the task itself (Task.init)"
            )
        return self._ctx

    def _require_native(self) -> NativeTask:
        if self._native is None:
            self._native = NativeTask.get(self._ctx.id)  # type: ignore[union-attr]
        return self._native

    def __repr__(self) -> str:
        return f"<trainyard.clearml.Task {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __getattr__(self, name: str):
        refuse_unknown("Task", name)


def mark_failed(message: str) -> None:
    """ClearML's controller marking its own task failed (``stop()`` after a failed step): the task
    ends failed with ``message`` when this process exits, and the script goes on until then, here
    or on a worker (it is never stopped by it)."""
    print(f"Setting pipeline controller Task as failed: {message}", file=sys.stderr, flush=True)
    if _inside_worker() or _attached is not None:
        current_task().fail_at_exit(message)


def _native_of(task: Task | str | NativeTask | None) -> NativeTask:
    if task is None:
        raise InvalidInput("no task given")
    if isinstance(task, Task):
        return task._require_native()
    if isinstance(task, NativeTask):
        return task
    return NativeTask.get(str(task))


def _main_script() -> Path:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    if not path or not Path(path).is_file():
        raise InvalidInput("Task.init outside a worker needs a script file (run it as: python script.py)")
    return Path(path).resolve()


_patched = False


def _patch_argparse() -> None:
    """argparse results are connected under ``Args/`` when parsed (ClearML's auto_connect_arg_parser)."""
    global _patched
    if _patched:
        return
    _patched = True
    original = argparse.ArgumentParser.parse_known_args

    @functools.wraps(original)
    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = original(self, args, namespace)
        task = _current
        if task is not None and task._ctx is not None:
            dests = {a.dest for a in self._actions if a.dest and a.dest != argparse.SUPPRESS and a.dest != "help"}
            values = {k: v for k, v in vars(parsed).items() if k in dests}
            task._connect_items(values, "Args", lambda k, v: setattr(parsed, k, v), False)
        return parsed, rest

    argparse.ArgumentParser.parse_known_args = parse_known_args  # type: ignore[method-assign]
