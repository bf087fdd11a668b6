"""The worker side of the run-folder protocol (version 1); the task side is ``trainyard.runtime.task_api``,
which owns the protocol's constants.

The worker creates a private run folder with ``task.json`` for each task attempt, tails the
``events.jsonl`` the task appends to (:class:`EventReader`), and reads artifact files only through
:func:`resolve_artifact` / :func:`open_artifact`, which refuse anything outside ``artifacts/``.
Everything in the run folder was written by the task and is treated as untrusted input.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ..runtime.task_api import (
    ARTIFACT_NAME,
    ARTIFACTS_DIR,
    EVENTS_FILE,
    MAX_LABEL,
    MAX_LINE_BYTES,
    PROTOCOL,
    QUERY_ID,
    QUERY_OPS,
    REPLIES_DIR,
    TASK_FILE,
)
from ..runtime.task_api import SECTION_NAME as _SECTION

_READ_CHUNK = 1 << 16
EVENT_KINDS = ("metric", "output", "artifact", "parameters", "query", "failure")


def create_run_folder(path: Path, task: Mapping[str, Any]) -> Path:
    """Create the run folder (mode 0o700) with ``artifacts/``, ``task.json`` and an empty ``events.jsonl``.

    ``task`` is a task record as a dict (``id``, ``name``, ``project``, ``parameters``,
    ``configuration``, and ``attempt`` or ``runtime.attempt``). The folder must not exist yet or be empty.
    """
    if hasattr(task, "model_dump"):  # a TaskRecord
        task = task.model_dump(mode="json")
    path = Path(path)
    task_id = task.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise ValueError(f"task id must be a non-empty string, got {task_id!r}")
    attempt = task.get("attempt")
    if attempt is None:
        attempt = (task.get("runtime") or {}).get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise ValueError(f"task {task_id}: attempt must be an int, got {attempt!r}")
    content = {
        "protocol": PROTOCOL,
        "id": task_id,
        "name": str(task.get("name") or ""),
        "project": str(task.get("project") or ""),
        "attempt": attempt,
        "parameters": dict(task.get("parameters") or {}),
        "configuration": dict(task.get("configuration") or {}),
    }
    try:
        data = json.dumps(content, allow_nan=False, indent=2).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"task {task_id}: parameters/configuration are not JSON ({exc})") from None

    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_symlink() or any(path.iterdir()):
        raise FileExistsError(f"run folder {path} already exists and is not empty")
    os.chmod(path, 0o700)
    (path / ARTIFACTS_DIR).mkdir(mode=0o700)
    (path / REPLIES_DIR).mkdir(mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".task-", dir=str(path))
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path / TASK_FILE)
    os.close(os.open(path / EVENTS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


# events -------------------------------------------------------------------------------------------


class _BadEvent(ValueError):
    """One event line that does not follow the protocol."""


def _reject_constant(name: str) -> Any:
    raise _BadEvent(f"{name} is not a JSON number")


def _label(event: dict, key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_LABEL:
        raise _BadEvent(f"{key!r} must be a string of 1 to {MAX_LABEL} characters, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _finite(event: dict, key: str) -> float:
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadEvent(f"{key!r} must be a number, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _BadEvent(f"{key!r} is out of range") from None
    if not math.isfinite(number):
        raise _BadEvent(f"{key!r} must be a finite number, got {number}")
    return number


def _check_key(key: Any) -> str:
    """A ``Section/name`` parameter key."""
    if not isinstance(key, str):
        raise _BadEvent(f"parameter key {_short(key)} is not a string")
    section, sep, name = key.partition("/")
    if not sep or not _SECTION.fullmatch(section) or not name.strip() or name != name.strip():
        raise _BadEvent(f"malformed parameter key {_short(key)} (expected Section/name)")
    return key


def validate_event(event: Any) -> dict:
    """Check one decoded event and return it normalised (known keys only); raise ValueError if bad."""
    if not isinstance(event, dict):
        raise _BadEvent(f"an event must be a JSON object, got {type(event).__name__}")
    kind = event.get("kind")
    if kind == "metric":
        step = event.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise _BadEvent(f"'step' must be an int or null, got {_short(step)}")
        return {
            "kind": "metric",
            "title": _label(event, "title"),
            "series": _label(event, "series"),
            "value": _finite(event, "value"),
            "step": step,
            "ts": _finite(event, "ts") if "ts" in event else time.time(),
        }
    if kind == "output":
        if "value" not in event:
            raise _BadEvent("output event without 'value'")
        return {"kind": "output", "name": _label(event, "name"), "value": event["value"]}
    if kind == "artifact":
        name = event.get("name")
        if not isinstance(name, str) or not ARTIFACT_NAME.fullmatch(name):
            raise _BadEvent(f"invalid artifact name {_short(name)}")
        path = event.get("path")
        prefix = f"{ARTIFACTS_DIR}/{name}/"
        filename = path[len(prefix) :] if isinstance(path, str) and path.startswith(prefix) else ""
        if filename in ("", ".", "..") or "/" in filename or "\0" in filename:
            raise _BadEvent(f"artifact {name}: path {_short(path)} is not {prefix}<filename>")
        metadata = event.get("metadata", {})
        if not isinstance(metadata, dict):
            raise _BadEvent(f"artifact {name}: 'metadata' must be an object, got {_short(metadata)}")
        return {"kind": "artifact", "name": name, "path": path, "metadata": metadata}
    if kind == "parameters":
        values = event.get("values")
        if not isinstance(values, dict):
            raise _BadEvent(f"'values' must be an object, got {_short(values)}")
        for key in values:
            _check_key(key)
        return {"kind": "parameters", "values": values}
    if kind == "query":
        query_id, op, args = event.get("id"), event.get("op"), event.get("args")
        if not isinstance(query_id, str) or not QUERY_ID.fullmatch(query_id):
            raise _BadEvent(f"query id {_short(query_id)} is not 32 lowercase hex digits")
        if op not in QUERY_OPS:
            raise _BadEvent(f"unknown query {_short(op)} (expected one of {', '.join(QUERY_OPS)})")
        if not isinstance(args, dict):
            raise _BadEvent(f"query 'args' must be an object, got {_short(args)}")
        return {"kind": "query", "id": query_id, "op": op, "args": args}
    if kind == "failure":
        error = event.get("error")
        if not isinstance(error, str) or not error.strip():
            raise _BadEvent(f"failure 'error' must be a non-empty string, got {_short(error)}")
        return {"kind": "failure", "error": error.strip()}
    raise _BadEvent(f"unknown event kind {_short(kind)} (expected one of {', '.join(EVENT_KINDS)})")


def write_reply(run_dir: Path | str, query_id: str, answer: Mapping[str, Any]) -> None:
    """Answer a query: ``replies/<id>.json`` appears whole (written beside, then renamed)."""
    folder = Path(run_dir) / REPLIES_DIR
    if not QUERY_ID.fullmatch(query_id) or folder.is_symlink() or not folder.is_dir():
        raise ValueError(f"cannot answer query {query_id!r} in {folder}")
    fd, tmp = tempfile.mkstemp(prefix=".reply-", dir=str(folder))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(answer, out, allow_nan=False, separators=(",", ":"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / f"{query_id}.json")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def parse_event_line(line: bytes) -> dict:
    """Decode and validate one line (without its newline); raise ValueError if bad."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadEvent(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        event = json.loads(text, parse_constant=_reject_constant)
    except _BadEvent:
        raise
    except (ValueError, RecursionError) as exc:
        raise _BadEvent(f"not valid JSON ({exc})") from None
    return validate_event(event)


class EventReader:
    """Tails ``<run_dir>/events.jsonl``: each poll returns the complete, valid lines added since the last."""

    def __init__(self, run_dir: Path | str, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.max_line_bytes = max_line_bytes
        self.offset = 0  # bytes consumed from the file
        self.line_no = 0  # lines completed so far
        self._partial = b""  # the start of an unfinished line
        self._skipping = False  # inside a line already reported as too long
        self._closed_early = False  # a final poll took an unfinished line as complete

    def poll(self) -> list[dict]:
        """New valid events (invalid lines are dropped; use :meth:`poll_with_errors` to see them)."""
        return self.poll_with_errors()[0]

    def poll_with_errors(self, final: bool = False) -> tuple[list[dict], list[str]]:
        """New valid events, and one message per rejected line (``line N: why``).

        A trailing line without its newline is kept for the next call; with ``final=True`` (the task
        has exited) it is taken as the last line.
        """
        events: list[dict] = []
        errors: list[str] = []
        try:
            with open(self.path, "rb") as handle:
                self._seek(handle, errors)
                for chunk in iter(lambda: handle.read(_READ_CHUNK), b""):
                    self.offset += len(chunk)
                    self._feed(chunk, events, errors)
        except FileNotFoundError:
            return events, errors
        if final and (self._partial or self._skipping):
            self.line_no += 1
            if self._skipping:
                errors.append(self._too_long())
            else:
                self._line(self._partial, events, errors, note=" (line has no final newline)")
            self._partial, self._skipping, self._closed_early = b"", False, True
        return events, errors

    def _seek(self, handle: BinaryIO, errors: list[str]) -> None:
        """Seek to where the last poll stopped (from the end, if the file shrank)."""
        size = os.fstat(handle.fileno()).st_size
        if size < self.offset:
            errors.append(f"{EVENTS_FILE} shrank from {self.offset} to {size} bytes; reading on from its end")
            self.offset, self._partial, self._skipping = size, b"", False
        handle.seek(self.offset)

    def _too_long(self) -> str:
        return f"line {self.line_no}: longer than {self.max_line_bytes} bytes, skipped"

    def _feed(self, chunk: bytes, events: list[dict], errors: list[str]) -> None:
        start = 0
        if self._closed_early:  # the newline of a line already taken by a final poll
            self._closed_early = False
            if chunk.startswith(b"\n"):
                start = 1
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                rest = chunk[start:]
                if self._skipping:
                    return
                if len(self._partial) + len(rest) > self.max_line_bytes:
                    self._partial, self._skipping = b"", True  # report when the line ends
                else:
                    self._partial += rest
                return
            piece = chunk[start:end]
            start = end + 1
            self.line_no += 1
            if self._skipping or len(self._partial) + len(piece) > self.max_line_bytes:
                errors.append(self._too_long())
            else:
                self._line(self._partial + piece, events, errors)
            self._partial, self._skipping = b"", False

    def _line(self, line: bytes, events: list[dict], errors: list[str], note: str = "") -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return  # blank lines are harmless
        try:
            events.append(parse_event_line(line))
        except _BadEvent as exc:
            errors.append(f"line {self.line_no}: {exc}{note}".replace("\n", " "))


# artifacts ----------------------------------------------------------------------------------------


def _artifact_parts(rel_path: str | os.PathLike) -> tuple[str, ...]:
    """Lexical check: ``artifacts/...`` relative, without ``..``."""
    text = os.fspath(rel_path)
    if not isinstance(text, str) or not text or "\0" in text:
        raise ValueError(f"artifact path {text!r} is not a valid path")
    pure = PurePosixPath(text)
    if pure.is_absolute() or os.path.isabs(text) or ".." in pure.parts:
        raise ValueError(f"artifact path {text!r} escapes the run folder")
    parts = pure.parts
    if len(parts) < 2 or parts[0] != ARTIFACTS_DIR:
        raise ValueError(f"artifact path {text!r} escapes the run folder (it must lie under {ARTIFACTS_DIR}/)")
    return parts


def resolve_artifact(run_dir: Path | str, rel_path: str | os.PathLike) -> Path:
    """The absolute path of an artifact file, only if it is a regular file (not a symlink) inside
    ``<run_dir>/artifacts/`` once resolved; else ValueError."""
    parts = _artifact_parts(rel_path)
    run = Path(run_dir).resolve(strict=True)
    base = run / ARTIFACTS_DIR
    if base.is_symlink() or not base.is_dir():
        raise ValueError(f"artifact path {rel_path!r} escapes the run folder ({ARTIFACTS_DIR}/ is not a plain folder)")
    candidate = run.joinpath(*parts)
    try:
        info = os.lstat(candidate)
    except OSError:
        raise ValueError(f"artifact path {rel_path!r} does not exist in the run folder") from None
    if stat.S_ISLNK(info.st_mode):
        raise ValueError(f"artifact path {rel_path!r} is a symlink: it escapes the run folder")
    resolved = candidate.resolve(strict=True)
    try:
        resolved.relative_to(base)
    except ValueError:
        raise ValueError(f"artifact path {rel_path!r} escapes the run folder (it resolves to {resolved})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"artifact path {rel_path!r} is not a regular file")
    return resolved


def open_artifact(run_dir: Path | str, rel_path: str | os.PathLike) -> BinaryIO:
    """Open an artifact for reading without following any symlink on the way.

    Unlike checking then opening a path, this cannot be raced by a task that swaps a folder or file
    for a symlink in between: each component is opened with ``O_NOFOLLOW`` relative to its parent.
    """
    parts = _artifact_parts(rel_path)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    directory = getattr(os, "O_DIRECTORY", 0)
    fd = os.open(Path(run_dir).resolve(strict=True), os.O_RDONLY | directory)
    try:
        for part in parts[:-1]:
            try:
                child = os.open(part, os.O_RDONLY | directory | nofollow, dir_fd=fd)
            except OSError as exc:
                raise ValueError(f"artifact path {rel_path!r} escapes the run folder or is missing ({exc})") from None
            os.close(fd)
            fd = child
        try:
            child = os.open(parts[-1], os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)
        except OSError as exc:
            raise ValueError(f"artifact path {rel_path!r} escapes the run folder or is missing ({exc})") from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(child).st_mode):
        os.close(child)
        raise ValueError(f"artifact path {rel_path!r} is not a regular file")
    os.set_blocking(child, True)
    return os.fdopen(child, "rb")
