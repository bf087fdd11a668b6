"""What defines a task's environment (EnvSpec), its cache key, and the builders by kind."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ...queues.record import ExecutionMode, Script
from ..launch import PrepareError
from .tools import find_uv, python_version

if TYPE_CHECKING:
    from .cache import EnvCache

TAIL_LINES = 10
TAIL_CHARS = 1500
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$")


class Builder(Protocol):
    """Builds one kind of environment (venv, conda) into a folder the cache gives it."""

    kind: str

    def family(self, cache: EnvCache) -> str:
        """What decides how requirements get resolved with this cache ("uv", "pip", "conda"): part of the key."""

    def build(
        self, cache: EnvCache, key: str, spec: EnvSpec, folder: Path, requirements: list[str]
    ) -> tuple[str, list[str]]:
        """Create the environment in ``folder``; returns (installer used, pip-freeze lines)."""


BUILDERS: dict[str, Builder] = {}  # kind -> builder, filled by the builder modules (venv.py, conda.py)


def register(builder: Builder) -> Builder:
    BUILDERS[builder.kind] = builder
    return builder


class InstallError(PrepareError):
    """An environment could not be built: what failed, then the installer's last lines."""

    def __init__(self, what: str, output: str = ""):
        self.what = what
        self.tail = last_lines(output)
        super().__init__(f"{what}: {' | '.join(self.tail)}" if self.tail else what)


def last_lines(output: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> list[str]:
    """The last non-blank lines of an installer's output, colour codes removed, at most ``chars`` long."""
    kept = [s for s in (_ANSI_RE.sub("", line).strip() for line in output.splitlines()) if s][-lines:]
    while kept and sum(len(s) + 3 for s in kept) > chars:
        if len(kept) == 1:
            kept[0] = "..." + kept[0][-(chars - 3) :]
            break
        kept.pop(0)
    return kept


def requirement_lines(requirements: Sequence[str]) -> list[str]:
    """The lines pip reads: stripped, without blank lines and comments."""
    lines = []
    for raw in requirements:
        line = re.sub(r"(^|\s+)#.*$", "", raw).strip()
        if line:
            lines.append(line)
    return lines


def normalise_requirement(line: str) -> str:
    """One canonical spelling: PEP 503 project name, no blanks around operators."""
    line = " ".join(line.split())
    match = _NAME_RE.match(line)
    if not match or line.startswith("-"):
        return line
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    rest = re.sub(r"\s*([<>=!~;,@\[\]()])\s*", r"\1", match.group(2))
    return name + rest


@dataclass(frozen=True)
class EnvSpec:
    """Everything that defines a task's environment."""

    kind: str  # "venv" | "conda"
    python: str | None = None  # "3.11"; None: the worker's own version
    requirements: tuple[str, ...] = ()
    conda_packages: tuple[str, ...] = ()
    extra_index_urls: tuple[str, ...] = ()
    cuda: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in BUILDERS:
            raise ValueError(f"environment kind must be one of {', '.join(BUILDERS)}, not {self.kind!r}")

    @classmethod
    def from_script(cls, kind: str | ExecutionMode, script: Script, cuda: str | None = None) -> EnvSpec:
        """The spec of a task record's ``script`` section for ``kind`` (venv or conda)."""
        return cls(
            kind=kind.value if isinstance(kind, ExecutionMode) else str(kind),
            python=script.python,
            requirements=tuple(script.requirements),
            conda_packages=tuple(script.conda_packages),
            extra_index_urls=tuple(script.extra_index_urls),
            cuda=cuda,
        )


def installer_family(kind: str, installer: str) -> str:
    """What decides how requirements get resolved: "uv" or "pip" for a venv, "conda" for conda."""
    return "conda" if kind == "conda" else ("uv" if installer == "uv" else "pip")


def env_key(spec: EnvSpec, family: str | None = None) -> str:
    """First 16 hex chars of the sha256 of a canonical JSON of ``spec`` and the installer family.

    ``family`` defaults to what ``EnvCache(installer="auto")`` picks on this host."""
    if family is None:
        family = installer_family(spec.kind, "uv" if spec.kind == "venv" and find_uv() else "pip")
    canonical = {
        "kind": spec.kind,
        "python": python_version(spec.python),
        "requirements": sorted({normalise_requirement(r) for r in requirement_lines(spec.requirements)}),
        "conda_packages": sorted({" ".join(p.split()) for p in spec.conda_packages if p.strip()}),
        "extra_index_urls": [u.strip() for u in spec.extra_index_urls if u.strip()],
        "cuda": spec.cuda,
        "installer": family,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class BuiltEnv:
    """A ready environment in the cache."""

    key: str
    path: Path
    python: Path  # the interpreter to run the task with
    cached: bool  # True: reused, not built by this call
    installer: str  # "uv", "pip", or "<conda tool>+pip"
    packages: list[str] = field(default_factory=list)  # pip-freeze lines


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
