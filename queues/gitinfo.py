"""Read a script's git checkout: repository, branch, commit and the uncommitted diff."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidInput

UNTRACKED_MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class GitInfo:
    root: Path
    repository: str  # remote URL without credentials, or the local path when there is no remote
    branch: str | None
    commit: str
    diff: str  # `git apply`-able: tracked changes plus small untracked files
    skipped_untracked: tuple[str, ...] = ()


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise InvalidInput(f"git {' '.join(args[:2])} failed in {cwd}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def strip_credentials(url: str) -> str:
    """``https://user:token@host/x.git`` -> ``https://host/x.git`` (ssh ``git@host:x`` stays)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ssh", "git") and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        if parts.scheme == "ssh":
            user = parts.username or ""
            host = f"{user}@{host}" if user and not parts.password else host
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def find_root(path: Path) -> Path | None:
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def inspect(path: Path) -> GitInfo | None:
    """Git facts about the checkout holding ``path``; None when it is not in a git checkout."""
    folder = path if path.is_dir() else path.parent
    root = find_root(folder)
    if root is None:
        return None
    commit = _git(root, "rev-parse", "HEAD", check=False).strip()
    if not commit:
        raise InvalidInput(f"git repository {root} has no commit yet: commit the script first")
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD", check=False).strip() or None
    if branch == "HEAD":
        branch = None
    remote = _git(root, "config", "--get", "remote.origin.url", check=False).strip()
    diff = _git(root, "diff", "--binary", "HEAD")
    extra, skipped = _untracked_diff(root)
    return GitInfo(
        root, strip_credentials(remote) if remote else str(root), branch, commit, diff + extra, tuple(skipped)
    )


def _untracked_diff(root: Path) -> tuple[str, list[str]]:
    """New files git does not track yet (and does not ignore), as a diff that creates them."""
    listing = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    parts: list[str] = []
    skipped: list[str] = []
    for rel in filter(None, listing.split("\0")):
        full = root / rel
        if not full.is_file() or full.is_symlink() or full.stat().st_size > UNTRACKED_MAX_BYTES:
            skipped.append(rel)
            continue
        proc = subprocess.run(
            ["git", "diff", "--binary", "--no-index", "--", os.devnull, rel],
            cwd=root,
            capture_output=True,
            text=True,
        )
        parts.append(proc.stdout)  # exit code 1 means "differences found"
    return "".join(parts), skipped
