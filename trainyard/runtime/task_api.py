"""The task side of the run-folder protocol (version 1): what a running task calls.

A worker runs each task with ``TRAINYARD_RUN_DIR`` pointing at a private run folder holding
``task.json``. The task reads its parameters from there and reports metrics, outputs and artifacts
by appending one JSON line per event to ``events.jsonl`` (one ``os.write`` on an ``O_APPEND`` file,
so lines from several threads or processes never interleave) and copying files to ``artifacts/``.
Read-only questions about other tasks (:meth:`RunContext.ask`) go the same way, as ``query``
events; the worker answers each in ``replies/<id>.json`` — the task never holds Redis credentials.

Without ``TRAINYARD_RUN_DIR`` the context is *offline*: parameters are the script's own defaults and
everything reported is kept in memory, so the same script runs with or without trainyard.

This module imports only the standard library and runs on Python 3.8+ (it also loads as a lone
file): the worker puts the runtime on the path of tasks in containers and virtualenvs that do not
have trainyard installed (worker/tasklib.py). It owns the run-folder protocol's constants.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import numbers
import operator
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

PROTOCOL = 1
ENV_RUN_DIR = "TRAINYARD_RUN_DIR"
ENV_TASK_ID = "TRAINYARD_TASK_ID"
TASK_FILE = "task.json"
EVENTS_FILE = "events.jsonl"
ARTIFACTS_DIR = "artifacts"
REPLIES_DIR = "replies"
QUERY_OPS = ("get", "find", "list")  # a task by id; the newest by project and name; a filtered list
QUERY_ID = re.compile(r"[0-9a-f]{32}")
ASK_TIMEOUT_S = 60.0
DEFAULT_SECTION = "General"
MAX_LABEL = 200  # characters in an output name, metric title or series
MAX_LINE_BYTES = 1 << 20  # one event line, without its newline; longer lines are refused by the worker
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

__all__ = ["RunContext", "QueryRefused", "current_task", "PROTOCOL", "ENV_RUN_DIR", "ENV_TASK_ID"]


def _check_label(kind: str, value: object) -> str:
    """An output name, metric title or series: a non-empty string of at most MAX_LABEL characters."""
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_LABEL:
        raise ValueError(f"{kind} {value[:50]!r} must be 1 to {MAX_LABEL} characters long")
    return value


def check_artifact_name(name: object) -> str:
    """Refuse artifact names that are not ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``."""
    if not isinstance(name, str) or not ARTIFACT_NAME.fullmatch(name):
        raise ValueError(
            f"invalid artifact name {name!r}: use 1 to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _parameter_key(key: str) -> str:
    """``lr`` -> ``General/lr``; ``Args/lr`` stays."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"parameter key must be a non-empty string, got {key!r}")
    return key if "/" in key else f"{DEFAULT_SECTION}/{key}"


def _json_dumps(value: Any) -> str:
    """Strict compact JSON: NaN and infinities are refused."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _is_json(value: Any) -> bool:
    try:
        _json_dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _load_task(run_dir: Path) -> dict:
    """Read and check ``task.json``."""
    path = run_dir / TASK_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise RuntimeError(f"{ENV_RUN_DIR}={run_dir} but {path} does not exist") from None
    except ValueError as exc:
        raise RuntimeError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RuntimeError(f"{path} must hold a JSON object")
    if data.get("protocol") != PROTOCOL:
        raise RuntimeError(
            f"{path} uses run-folder protocol {data.get('protocol')!r}; this task API speaks protocol {PROTOCOL}"
        )
    if not isinstance(data.get("id"), str) or not data["id"]:
        raise RuntimeError(f"{path}: 'id' must be a non-empty string")
    for key in ("parameters", "configuration"):
        if not isinstance(data.get(key, {}), dict):
            raise RuntimeError(f"{path}: {key!r} must be a JSON object")
    return data


class QueryRefused(Exception):
    """The worker refused or could not answer a question (``reason``: not_found, invalid, unavailable)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RunContext:
    """The running task: its identity and parameters, and the calls that report results."""

    def __init__(self, run_dir: str | os.PathLike | None = None) -> None:
        """Open the run folder ``run_dir``, or an offline context when it is None."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._fd: int | None = None
        self._reported: set[str] = set()
        self._outputs: dict[str, Any] = {}
        self._metrics: list[dict] = []  # offline only: online metrics live in events.jsonl
        self._artifacts: dict[str, Any] = {}  # offline only
        self._failure: str | None = None
        if run_dir is None:
            self._run_dir: Path | None = None
            task: dict = {"id": os.environ.get(ENV_TASK_ID) or "offline", "name": "offline", "project": ""}
        else:
            self._run_dir = Path(run_dir).absolute()
            task = _load_task(self._run_dir)
            env_id = os.environ.get(ENV_TASK_ID)
            if env_id and env_id != task["id"]:
                raise RuntimeError(f"{ENV_TASK_ID}={env_id} but {self._run_dir / TASK_FILE} is for task {task['id']}")
        self._id = str(task["id"])
        self._name = str(task.get("name") or "")
        self._project = str(task.get("project") or "")
        self._attempt = int(task.get("attempt") or 0)
        self._parameters: dict[str, Any] = dict(task.get("parameters") or {})
        self._configuration: dict[str, Any] = dict(task.get("configuration") or {})

    def __repr__(self) -> str:
        where = "offline" if self._run_dir is None else str(self._run_dir)
        return f"RunContext(id={self._id!r}, {where})"

    # identity -------------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The task id (``"offline"`` outside trainyard unless TRAINYARD_TASK_ID is set)."""
        return self._id

    @property
    def name(self) -> str:
        return self._name

    @property
    def project(self) -> str:
        return self._project

    @property
    def attempt(self) -> int:
        """Which run of the task this is (0 offline)."""
        return self._attempt

    @property
    def offline(self) -> bool:
        """True when not run by a trainyard worker (no run folder)."""
        return self._run_dir is None

    @property
    def run_dir(self) -> Path | None:
        return self._run_dir

    # parameters -----------------------------------------------------------------------------------

    def get_parameters(self) -> dict[str, Any]:
        """A copy of all ``Section/name`` parameters (including defaults connected so far)."""
        with self._lock:
            return copy.deepcopy(self._parameters)

    def get_parameter(self, key: str, default: Any = None) -> Any:
        """One parameter; ``key`` without a ``/`` means ``General/key``."""
        full = _parameter_key(key)
        with self._lock:
            return copy.deepcopy(self._parameters[full]) if full in self._parameters else default

    def get_configuration(self) -> dict[str, Any]:
        """A copy of the task's configuration objects."""
        return copy.deepcopy(self._configuration)

    def connect(self, mutable: Any, name: str = DEFAULT_SECTION) -> Any:
        """Overlay the task's parameters on the script's defaults.

        Updates the given dict (or ``argparse.Namespace``) in place, as ClearML does, and returns it:
        each key ``k`` takes the task's value for ``name/k`` when it has one, else keeps its default.
        Defaults the task did not have are reported once (a ``parameters`` event) so the worker can
        record them. Offline, the values stay the defaults.
        """
        if isinstance(mutable, argparse.Namespace):
            for key, value in self.connect(dict(vars(mutable)), name).items():
                setattr(mutable, key, value)
            return mutable
        if not isinstance(mutable, dict):
            raise TypeError(f"connect() takes a dict or argparse.Namespace, got {type(mutable).__name__}")
        if not isinstance(name, str) or not SECTION_NAME.fullmatch(name):
            raise ValueError(
                f"invalid parameter section {name!r}: start with a letter or _, then letters, digits, '_', '.', '-'"
            )
        result: dict[Any, Any] = {}
        new: dict[str, Any] = {}
        with self._lock:
            for key, default in mutable.items():
                if not isinstance(key, str) or not key.strip():
                    raise ValueError(f"connect(): parameter names must be non-empty strings, got {key!r}")
                full = f"{name}/{key}"
                if full in self._parameters:
                    result[key] = copy.deepcopy(self._parameters[full])
                    continue
                result[key] = default
                if full in self._reported:
                    continue
                if not _is_json(default):
                    warnings.warn(
                        f"trainyard: parameter {full} = {default!r} is not a JSON value; it is not recorded",
                        stacklevel=2,
                    )
                    continue
                new[full] = copy.deepcopy(default)
            self._reported.update(new)
            self._parameters.update(new)
        if new and not self.offline:
            self._emit({"kind": "parameters", "values": new})
        mutable.update(result)
        return mutable

    # reporting ------------------------------------------------------------------------------------

    def log_metric(self, title: str, series: str, value: float, step: int | None = None) -> None:
        """Report one scalar ``value`` of ``title``/``series`` (at ``step``, when given)."""
        _check_label("metric title", title)
        _check_label("metric series", series)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"metric {title}/{series}: value must be a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {title}/{series}: value {number} is not a finite number")
        if step is not None:
            if isinstance(step, bool):
                raise TypeError(f"metric {title}/{series}: step must be an int or None, got bool")
            try:
                step = operator.index(step)
            except TypeError:
                raise TypeError(
                    f"metric {title}/{series}: step must be an int or None, got {type(step).__name__}"
                ) from None
        event = {"kind": "metric", "title": title, "series": series, "value": number, "step": step, "ts": time.time()}
        if self.offline:
            with self._lock:
                self._metrics.append(event)
            return
        self._emit(event)

    def set_output(self, name: str, value: Any) -> None:
        """Record a named result; ``value`` must be JSON (no NaN or infinities)."""
        _check_label("output name", name)
        try:
            _json_dumps(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise TypeError(f"output {name!r}: value is not JSON-serialisable ({exc})") from None
        event = {"kind": "output", "name": name, "value": value}
        if not self.offline:
            self._emit(event)
        with self._lock:
            self._outputs[name] = copy.deepcopy(value)

    def upload_artifact(self, name: str, artifact: Any, metadata: dict | None = None) -> str:
        """Store a file, folder (zipped), ``bytes`` or JSON dict/list as artifact ``name``.

        Returns the path relative to the run folder (``artifacts/<name>/<filename>``). Offline, nothing
        is copied: returns the source path for a file or folder, else the path it would have had.
        Symlinks are followed: the run folder only ever holds regular files.
        """
        check_artifact_name(name)
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict) or not _is_json(metadata):
            raise TypeError(f"artifact {name!r}: metadata must be a JSON object (dict)")
        source: Path | None = None
        if isinstance(artifact, (str, os.PathLike)):
            source = Path(os.path.abspath(os.fspath(artifact)))
            if not source.exists():
                raise FileNotFoundError(f"artifact {name!r}: {source} does not exist")
            if source.is_dir():
                filename = f"{name}.zip"
            elif source.is_file():
                filename = source.name
            else:
                raise ValueError(f"artifact {name!r}: {source} is neither a regular file nor a folder")
        elif isinstance(artifact, (bytes, bytearray, memoryview)):
            filename = f"{name}.bin"
        elif isinstance(artifact, (dict, list)):
            if not _is_json(artifact):
                raise TypeError(f"artifact {name!r}: the dict/list is not JSON-serialisable")
            filename = f"{name}.json"
        else:
            raise TypeError(
                f"artifact {name!r}: only paths (str or os.PathLike), bytes and JSON dict/list are accepted, "
                f"got {type(artifact).__name__} (objects are never pickled)"
            )
        rel = f"{ARTIFACTS_DIR}/{name}/{filename}"
        if self._run_dir is None:
            with self._lock:
                self._artifacts[name] = str(source) if source is not None else copy.deepcopy(artifact)
            return str(source) if source is not None else rel
        folder = self._run_dir / ARTIFACTS_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            raise RuntimeError(f"artifact {name!r}: {folder} is not a plain folder")
        self._write_file(folder / filename, artifact, source)
        self._emit({"kind": "artifact", "name": name, "path": rel, "metadata": metadata})
        return rel

    def fail_at_exit(self, error: str) -> None:
        """End this task failed with ``error`` when its process exits, even with exit status 0;
        the process goes on running until then (a controller marking its own task failed and
        carrying on, as ClearML's pipelines do when a step failed)."""
        if not isinstance(error, str) or not error.strip():
            raise ValueError("fail_at_exit needs a non-empty error message")
        error = error.strip()
        with self._lock:
            self._failure = error
        if not self.offline:
            self._emit({"kind": "failure", "error": error})

    # in-memory record ----------------------------------------------------------------------------

    def get_outputs(self) -> dict[str, Any]:
        """Outputs set by this process."""
        with self._lock:
            return copy.deepcopy(self._outputs)

    def get_metrics(self) -> list[dict]:
        """Metrics logged by this process while offline (online they go to the worker only)."""
        with self._lock:
            return copy.deepcopy(self._metrics)

    def get_artifacts(self) -> dict[str, Any]:
        """Artifacts given while offline: source path, or the bytes/dict/list itself."""
        with self._lock:
            return dict(self._artifacts)

    # questions to the worker -----------------------------------------------------------------------

    def ask(self, op: str, args: dict, timeout: float = ASK_TIMEOUT_S) -> Any:
        """A read-only question about other tasks, answered by the worker from its Redis.

        ``op`` is one of QUERY_OPS; returns the answer's value (task records as JSON objects). A
        refusal raises :class:`QueryRefused` whose ``reason`` is ``not_found``, ``invalid`` or
        ``unavailable`` and whose message is one line.
        """
        if op not in QUERY_OPS:
            raise ValueError(f"unknown question {op!r} (expected one of {', '.join(QUERY_OPS)})")
        if self._run_dir is None:
            raise QueryRefused("unavailable", "offline (no TRAINYARD_RUN_DIR): there is no worker to ask")
        query_id = os.urandom(16).hex()
        reply = self._run_dir / REPLIES_DIR / f"{query_id}.json"
        self._emit({"kind": "query", "id": query_id, "op": op, "args": args})
        deadline, pause = time.monotonic() + timeout, 0.005
        while True:  # the worker answers on its next reporting tick (a tenth of a second)
            try:
                with open(reply, encoding="utf-8") as handle:
                    answer = json.load(handle)
                break
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise QueryRefused("unavailable", f"the worker did not answer within {timeout:g}s") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        with contextlib.suppress(OSError):
            os.unlink(reply)
        if not isinstance(answer, dict):
            raise QueryRefused("unavailable", "the worker's answer is not a JSON object")
        if not answer.get("ok"):
            raise QueryRefused(str(answer.get("reason") or "invalid"), str(answer.get("error") or "refused"))
        return answer.get("value")

    # internals ------------------------------------------------------------------------------------

    def _write_file(self, dest: Path, artifact: Any, source: Path | None) -> None:
        """Write the artifact to a temporary file beside ``dest``, then rename it into place."""
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=str(dest.parent))
        try:
            if source is not None and source.is_dir():
                os.close(fd)
                _zip_folder(source, Path(tmp))
            else:
                with os.fdopen(fd, "wb") as out:
                    if source is not None:
                        with open(source, "rb") as src:  # open() follows symlinks: content is copied
                            shutil.copyfileobj(src, out, 1 << 20)
                    elif isinstance(artifact, (dict, list)):
                        out.write(json.dumps(artifact, allow_nan=False, indent=2).encode("utf-8"))
                    else:
                        out.write(bytes(artifact))
            os.chmod(tmp, 0o644)
            os.replace(tmp, str(dest))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _emit(self, event: dict) -> None:
        """Append one event as a single line with a single ``os.write`` on an ``O_APPEND`` fd."""
        assert self._run_dir is not None
        data = (_json_dumps(event) + "\n").encode("utf-8")
        if len(data) - 1 > MAX_LINE_BYTES:
            raise ValueError(
                f"{event['kind']} event is {len(data)} bytes; the limit is {MAX_LINE_BYTES} (use an artifact)"
            )
        if self._pid != os.getpid():  # forked: the parent's lock and fd are not ours
            self._lock = threading.Lock()
            self._fd = None
            self._pid = os.getpid()
        with self._lock:
            if self._fd is None:
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
                self._fd = os.open(str(self._run_dir / EVENTS_FILE), flags, 0o600)
            written = os.write(self._fd, data)
            while written < len(data):  # a short write (disk full, signal): finish the line anyway
                written += os.write(self._fd, data[written:])

    def close(self) -> None:
        """Close the events file (reopened on the next report)."""
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


def _zip_folder(folder: Path, dest: Path) -> None:
    """Zip ``folder`` into ``dest``, following symlinks (each real folder visited once)."""
    seen: set[str] = set()
    dest_real = os.path.realpath(str(dest))
    with zipfile.ZipFile(str(dest), "w", zipfile.ZIP_DEFLATED) as archive:
        for top, dirs, files in os.walk(str(folder), followlinks=True):
            real = os.path.realpath(top)
            if real in seen:  # a symlink loop or a second link to the same folder
                dirs[:] = []
                continue
            seen.add(real)
            dirs.sort()
            rel_top = os.path.relpath(top, str(folder))
            if rel_top != "." and not files and not dirs:
                archive.write(top, rel_top)
            for filename in sorted(files):
                path = os.path.join(top, filename)
                if os.path.realpath(path) == dest_real or not os.path.isfile(path):
                    continue  # the archive itself, broken links, sockets, fifos
                archive.write(path, os.path.normpath(os.path.join(rel_top, filename)))


_current: RunContext | None = None
_current_key: tuple[str | None, str | None] | None = None
_current_lock = threading.Lock()


def current_task() -> RunContext:
    """The running task, from ``TRAINYARD_RUN_DIR``; an offline context when it is unset.

    Cached per process, and re-created when the environment variables change.
    """
    global _current, _current_key
    key = (os.environ.get(ENV_RUN_DIR) or None, os.environ.get(ENV_TASK_ID) or None)
    with _current_lock:
        if _current is None or _current_key != key:
            if _current is not None:
                _current.close()
            _current = RunContext(key[0])
            _current_key = key
        return _current


def _after_fork_in_child() -> None:
    """A forked child must not inherit locks another thread of the parent may have held."""
    global _current_lock
    _current_lock = threading.Lock()
    if _current is not None:
        _current._lock = threading.Lock()
        if _current._fd is not None:
            with contextlib.suppress(OSError):
                os.close(_current._fd)  # the child's copy; the parent's stays open
        _current._fd = None
        _current._pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
