"""Finding actions: ``owner/repo@tag`` (git, cached clone of the tag), the object form, a local folder.

Where ``owner/repo`` comes from is set by ``TRAINYARD_ACTIONS_SOURCE``: a base URL (default
``https://github.com``; a mirror such as ``https://git.example.com/mirror``) giving
``<base>/<owner>/<repo>.git``, or a local folder of repositories giving ``<folder>/<owner>/<repo>``
(``<repo>.git`` is tried too), so pipelines run on machines without internet. As in DataTorch,
``datatorch/<name>`` is ``datatorch-actions/<name>`` and the tag ``latest`` is the default branch.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ...queues import config
from ...runtime import expr
from ...runtime.jobrun import LATEST, StepFailed, fetch_git
from .datatorch import published_name
from .errors import FileError, PipelineFileError, field_path
from .loader import line_of, parse
from .schema import ActionFile, ActionObject

SOURCE_ENV = "TRAINYARD_ACTIONS_SOURCE"
DEFAULT_SOURCE = "https://github.com"
ACTION_FILES = ("action.yaml", "action.yml", "action-datatorch.yaml", "action-datatorch.yml")
MAX_EMBED_BYTES = 1 << 20
MACHINE_LOCAL = {"agent", "directory", "machine", "python", "step", "action"}  # DataTorch's, in action defaults
_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")  # a local action folder travels inside the job (bigger ones: use git)


class ResolvedAction(BaseModel):
    """An action found and read: what the job needs to run it anywhere."""

    key: str
    display: str
    kind: Literal["git", "path"]
    url: str | None = None
    tag: str | None = None
    sha: str | None = None
    file: str
    definition: dict[str, Any]
    files: dict[str, dict[str, Any]] = {}


def actions_source() -> str:
    return config.current().actions_source or DEFAULT_SOURCE


def cache_root() -> Path:
    settings = config.current()
    return settings.actions_cache or settings.home / "actions"


def repo_url(name: str, source: str | None = None) -> str:
    """``owner/repo`` -> where to clone it from, per the configured source."""
    source = source or actions_source()
    if source.startswith("file://"):
        source = source[len("file://") :]
    if "://" not in source and not source.startswith("git@"):
        base = Path(source).expanduser()
        for candidate in (base / name, base / f"{name}.git"):
            if candidate.exists():
                return str(candidate)
        return str(base / name)
    return f"{source.rstrip('/')}/{name}.git"


def redact(text: str) -> str:
    """Credentials in URLs (``https://user:token@host``) hidden: they may appear in a private action's git URL."""
    return _CREDENTIALS.sub(r"\1***@", text)


def describe(action: str | ActionObject) -> str:
    if isinstance(action, ActionObject):
        return f"{action.name}@{action.tag}" + (f" ({redact(action.git)})" if action.git else "")
    return action


def is_local(action: str | ActionObject) -> bool:
    return isinstance(action, str) and action.startswith(("./", "../", "/"))


def resolve(action: str | ActionObject, base_dir: Path | None) -> ResolvedAction:
    """Fetch (or read) an action and its action file; ValueError or PipelineFileError says what is wrong."""
    if is_local(action):
        if base_dir is None and not action.startswith("/"):
            raise ValueError(f"local action {action!r}: the file's folder is unknown (give the file's path)")
        folder = (base_dir / action if not action.startswith("/") else Path(action)).resolve()
        if not folder.is_dir():
            raise ValueError(f"action folder {action!r} not found ({folder})")
        file, definition = load_action(folder)
        files = _embed(folder)
        key = "path-" + hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16]
        return ResolvedAction(key=key, display=action, kind="path", file=file, definition=definition, files=files)
    if isinstance(action, ActionObject):
        name, tag, wanted_file = published_name(action.name), action.tag, action.file
        url = action.git or repo_url(name)
    else:
        name, at, tag = action.strip().partition("@")
        if not at or not tag:
            raise ValueError(f"action {action!r} needs a tag: owner/repo@tag (e.g. {action}@v1)")
        if name.count("/") != 1 or not all(name.split("/")):
            raise ValueError(f"action {action!r}: expected owner/repo@tag or a local path such as ./actions/x")
        url, wanted_file = repo_url(published_name(name)), None
    try:
        folder, sha = fetch_git(url, tag, cache_root())
    except StepFailed as exc:
        raise ValueError(redact(str(exc))) from None
    file, definition = load_action(folder, wanted_file)
    stored = _CREDENTIALS.sub(r"\1", url)  # never stored: workers fetch with their own git credentials
    key = "git-" + hashlib.sha256(f"{stored}@{tag}".encode()).hexdigest()[:16]
    return ResolvedAction(
        key=key, display=describe(action), kind="git", url=stored, tag=tag, sha=sha, file=file, definition=definition
    )


def refresh_latest(action: ResolvedAction) -> ResolvedAction:
    """A git action at ``latest`` (the default branch) pinned to the branch's commit now, not the one
    seen when the file was registered; any other action as it is."""
    if action.kind != "git" or action.tag != LATEST or not action.url:
        return action
    try:
        _, sha = fetch_git(action.url, LATEST, cache_root())
    except StepFailed as exc:
        raise ValueError(redact(str(exc))) from None
    return action.model_copy(update={"sha": sha})


def load_action(folder: Path, wanted: str | None = None) -> tuple[str, dict]:
    """The action file in ``folder`` (``action.yaml``, or DataTorch's ``action-datatorch.yaml``) checked."""
    names = (wanted,) if wanted else ACTION_FILES
    for name in names:
        path = folder / name
        if path.is_file():
            break
    else:
        raise ValueError(f"no action file in {folder} (looked for {', '.join(names)})")
    text = path.read_text()
    data, lines = parse(text, str(path))
    try:
        model = ActionFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise PipelineFileError(
            [
                FileError(
                    file=str(path), line=line_of(lines, tuple(e["loc"])), field=field_path(e["loc"]), message=e["msg"]
                )
                for e in exc.errors()
            ]
        ) from None
    definition = model.model_dump(mode="json", by_alias=False, exclude={"schema_"})
    problems = [
        FileError(file=str(path), line=line_of(lines, where), field=field_path(where), message=message)
        for where, message in action_expression_problems(definition)
    ]
    if problems:
        raise PipelineFileError(problems)
    return name, definition


def action_expression_problems(definition: dict[str, Any]) -> list[tuple[tuple, str]]:
    """What validation can tell about an action file's ``${{ }}`` before it runs: names in its
    command and args (``inputs.<declared>``, ``action.path``, the job's contexts) and input
    defaults, which are plain values but for DataTorch's machine-local names
    (``${{ directory.temp }}/download``, what its published actions use)."""
    declared = definition.get("inputs") or {}
    problems: list[tuple[tuple, str]] = []
    for name, spec in declared.items():
        default = (spec or {}).get("default")
        if isinstance(default, str) and not all(_machine_local(e) for e in expr.expressions(default)):
            problems.append((("inputs", name, "default"), "a default is a plain value: ${{ }} is not evaluated there"))
    runs = definition.get("runs") or {}
    texts = [(("runs", "command"), runs.get("command"))]
    texts += [(("runs", "args", i), arg) for i, arg in enumerate(runs.get("args") or [])]
    for where, text in texts:
        if not isinstance(text, str):
            continue
        for found in expr.expressions(text):
            try:
                refs = list(expr.references(expr.parse(found)))
            except expr.ExpressionError as exc:
                problems.append((where, str(exc)))
                continue
            for ref in refs:
                problem = _action_ref_problem(ref, declared)
                if problem:
                    problems.append((where, f"${{{{ {'.'.join(str(p) for p in ref)} }}}}: {problem}"))
    return problems


def _machine_local(text: str) -> bool:
    """An expression of DataTorch's machine-local names only (``directory.temp``), known when the step runs."""
    try:
        heads = {ref[0] for ref in expr.references(expr.parse(text))}
    except expr.ExpressionError:
        return False
    return bool(heads) and heads <= MACHINE_LOCAL


def _action_ref_problem(ref: tuple, declared: dict[str, Any]) -> str | None:
    head = ref[0]
    if head == "action":
        return None if ref[1:] in ((), ("path",)) else "the action's context has only action.path"
    if head not in expr.NAMESPACES:
        return f"unknown name {head!r} (an action's inputs are inputs.<name>)"
    if head == "inputs":
        if len(ref) < 2:
            return "inputs needs a name (inputs.<name>)"
        if str(ref[1]) not in declared:
            return f"unknown input {ref[1]!r} (declared: {', '.join(declared) or 'none'})"
    return None


def _embed(folder: Path) -> dict[str, dict[str, Any]]:
    files, total = {}, 0
    for path in sorted(folder.rglob("*")):
        if ".git" in path.relative_to(folder).parts or not path.is_file():
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_EMBED_BYTES:
            raise ValueError(f"local action {folder} is over {MAX_EMBED_BYTES >> 20} MiB: publish it as a git action")
        files[str(path.relative_to(folder))] = {"data": base64.b64encode(data).decode(), "mode": path.stat().st_mode}
    return files
