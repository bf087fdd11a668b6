"""Reading a task's code from disk: its git checkout (or standalone source) and requirements."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import gitinfo
from .errors import InvalidInput
from .record import Script


def read_text(path: Path, what: str) -> str:
    """A text file's content; a binary or unreadable file is refused in one line naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {path} is not a text file (not UTF-8)") from None
    if "\x00" in text:
        raise InvalidInput(f"{what} {path} is not a text file (it holds NUL bytes)")
    return text


def read_requirements(path: Path) -> list[str]:
    """Requirement lines of a requirements file (comments and blank lines left out)."""
    lines = []
    for raw in read_text(path, "requirements file").splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("-") else raw.strip()
        if line:
            lines.append(line)
    return lines


def requirement_lines(value: Iterable[str] | str | Path) -> list[str]:
    """Requirements given as a file path, a multi-line string, or a list."""
    if isinstance(value, Path) or (isinstance(value, str) and "\n" not in value and Path(value).is_file()):
        return read_requirements(Path(value))
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


def fill_from_script(model: Script, path: Path, detect_repository: bool) -> None:
    """Record where ``path`` lives: repository, branch, commit, uncommitted diff, working folder and
    entry point (a script outside git carries its own source), and a requirements.txt beside it."""
    path = path.expanduser().resolve()
    if not path.is_file():
        raise InvalidInput(f"script not found: {path}")
    info = gitinfo.inspect(path) if detect_repository else None
    if info is None:
        # A standalone script: its source travels in the record.
        if path.stat().st_size > gitinfo.UNTRACKED_MAX_BYTES:
            raise InvalidInput(f"script {path} is over 1 MB and not in a git repository")
        model.entry_point = path.name
        model.source = read_text(path, "script")
        model.working_dir = "."
        return
    rel = path.relative_to(info.root)
    model.repository = model.repository or info.repository
    model.branch = model.branch or info.branch
    model.commit = model.commit or info.commit
    model.diff = info.diff or None
    model.working_dir = str(rel.parent) if str(rel.parent) != "" else "."
    model.entry_point = rel.name
    if not model.requirements:
        for candidate in (path.parent / "requirements.txt", info.root / "requirements.txt"):
            if candidate.is_file():
                model.requirements = read_requirements(candidate)
                break
