"""Check out a task's code: a per-host cache of bare git mirrors, and fresh working copies from it.

Each repository is mirrored once under ``root/<sha256(url)[:16]>.git`` and shared by every worker of
the host (an ``fcntl.flock`` lock file per mirror guards cloning and fetching). A task's working copy is
a ``git clone --shared`` of the mirror at the recorded commit, with the recorded uncommitted diff applied.

Credentials reach git only through the environment of the git process (read back by a ``GIT_ASKPASS``
helper); they are never put in argv, in a URL or in a config file, and are masked in every message.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..queues import config
from ..queues.gitinfo import strip_credentials
from ..queues.record import Script
from .launch import PrepareError

USER_VAR = "TRAINYARD_GIT_USER"
TOKEN_VAR = "TRAINYARD_GIT_TOKEN"
_ASKPASS_USER_VAR = "TRAINYARD_ASKPASS_USERNAME"
_ASKPASS_TOKEN_VAR = "TRAINYARD_ASKPASS_PASSWORD"
_ASKPASS_SCRIPT = f"""#!/bin/sh
case "$1" in
  [Uu]sername*) printf '%s\\n' "${_ASKPASS_USER_VAR}" ;;
  *) printf '%s\\n' "${_ASKPASS_TOKEN_VAR}" ;;
esac
"""
# inherited variables that would point git at another repository, or pop up a password dialog
_DROPPED_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
)
# abort a transfer that stalls (below 1 byte/s for 2 minutes) instead of hanging the worker
_NETWORK_CONFIG = ("-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=120")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class SourceError(PrepareError):
    """The task's source cannot be checked out (unreachable repository, missing commit, stale diff)."""


@dataclass
class GitCredentials:
    """HTTP(S) user name and token (password) for private repositories."""

    username: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> GitCredentials | None:
        """From ``TRAINYARD_GIT_USER`` / ``TRAINYARD_GIT_TOKEN``; None when neither is set."""
        settings = config.current()
        username, token = settings.git_user, settings.git_token
        return cls(username, token) if username or token else None

    def redact(self, text: str) -> str:
        """``text`` with the token (plain or URL-encoded) replaced by ``***``."""
        if self.token:
            for form in {self.token, quote(self.token, safe="")}:
                text = text.replace(form, "***")
        return text


def short(commit: str) -> str:
    return commit[:10]


def cache_key(repository: str) -> str:
    return hashlib.sha256(repository.encode()).hexdigest()[:16]


def split_url_credentials(repository: str) -> tuple[str, GitCredentials | None]:
    """``https://user:tok@host/x`` -> (``https://host/x``, its credentials); other URLs unchanged."""
    parts = urlsplit(repository)
    if parts.scheme not in ("http", "https") or parts.password is None:
        return repository, None
    user = unquote(parts.username) if parts.username else None
    return strip_credentials(repository), GitCredentials(user, unquote(parts.password))


def last_line(text: str) -> str:
    """The last non-blank line of git's output (its actual complaint)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "git failed without a message"


def count_files(diff: str) -> int:
    return sum(1 for line in diff.splitlines() if line.startswith("diff --git "))


class _Git:
    """Runs git with a clean, prompt-free environment that carries the credentials, if any."""

    def __init__(self, credentials: GitCredentials | None, askpass_dir: Path | None) -> None:
        self.credentials = credentials
        self.env = self._environment(askpass_dir)

    def _environment(self, askpass_dir: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["SSH_ASKPASS_REQUIRE"] = "never"
        if self.credentials and askpass_dir is not None:
            env["GIT_ASKPASS"] = str(askpass_dir / "askpass.sh")
            env[_ASKPASS_USER_VAR] = self.credentials.username or ""
            env[_ASKPASS_TOKEN_VAR] = self.credentials.token or ""
        return env

    def __call__(self, *args: str, cwd: Path | None = None, network: bool = False) -> subprocess.CompletedProcess:
        prefix: list[str] = list(_NETWORK_CONFIG) if network else []
        if network and self.credentials:
            prefix += ["-c", "credential.helper="]  # ours only, and never stored by a helper
        try:
            return subprocess.run(
                ["git", *prefix, *args],
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                start_new_session=True,  # no controlling terminal: nothing can prompt
            )
        except FileNotFoundError as exc:
            raise SourceError(f"cannot run git: {exc.strerror}") from None

    def redact(self, text: str) -> str:
        """``text`` without the token nor any ``user:password@`` in URLs."""
        text = self.credentials.redact(text) if self.credentials else text
        return _URL_USERINFO.sub("", text)

    def reason(self, proc: subprocess.CompletedProcess) -> str:
        """git's last stderr line, with secrets masked."""
        return self.redact(last_line(proc.stderr or proc.stdout or ""))


@contextlib.contextmanager
def askpass_folder(credentials: GitCredentials | None) -> Iterator[Path | None]:
    """A private (0700) temp folder holding the askpass helper; None without credentials."""
    if not credentials:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="trainyard-askpass-"))
    try:
        folder.chmod(0o700)
        script = folder / "askpass.sh"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w") as handle:
            handle.write(_ASKPASS_SCRIPT)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def locked(path: Path, exclusive: bool) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if needed): exclusive or shared."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class SourceCache:
    """Bare mirrors of task repositories under ``root``, and working copies made from them."""

    def __init__(
        self,
        root: Path,
        log: Callable[[str], None] = lambda s: None,
        credentials: GitCredentials | None = None,
    ) -> None:
        self.root = Path(root)
        self.log = log
        self.credentials = credentials

    def mirror_path(self, repository: str) -> Path:
        """Where the mirror of ``repository`` (credentials stripped) lies."""
        return self.root / f"{cache_key(split_url_credentials(repository)[0])}.git"

    def checkout(self, script: Script, dest: Path) -> Path:
        """A fresh working copy of ``script``'s repository at its commit (or branch tip, or default
        branch) in ``dest``, with its uncommitted diff applied; returns ``dest``."""
        if not script.repository:
            raise SourceError("the task records no repository to check out")
        _check_ref(script)
        url, url_credentials = split_url_credentials(script.repository)
        credentials = self.credentials or url_credentials
        self.root.mkdir(parents=True, exist_ok=True)
        with askpass_folder(credentials) as folder:
            git = _Git(credentials, folder)
            job = _Job(git, url, self.mirror_path(url), self.root / f"{cache_key(url)}.lock", self.log)
            try:
                job.run(script, Path(dest))
            except SourceError as exc:
                raise SourceError(git.redact(str(exc))) from None
        return Path(dest)


@dataclass
class _Job:
    """One checkout: every line it logs or raises goes through ``git.redact``."""

    git: _Git
    url: str
    mirror: Path
    lock: Path
    sink: Callable[[str], None]

    def log(self, line: str) -> None:
        self.sink(self.git.redact(line))

    def run(self, script: Script, dest: Path) -> None:
        commit = self.resolve(script)
        self.working_copy(commit, script.diff, dest)

    # -- the mirror --------------------------------------------------------------------------

    def resolve(self, script: Script) -> str:
        """The full id of the commit to check out, fetching into the mirror only when needed."""
        if script.commit:
            with locked(self.lock, exclusive=False):
                if self.mirror.is_dir() and self.has_commit(script.commit):
                    self.log(f"source: cache hit ({short(script.commit)} already fetched)")
                    return self.rev_parse(script.commit)
        with locked(self.lock, exclusive=True):
            fresh = self.ensure_mirror()
            if script.commit:
                return self.commit_in_mirror(script.commit, fetched=fresh)
            if not fresh:
                self.fetch()
            return self.tip(script.branch)

    def ensure_mirror(self) -> bool:
        """Clone the repository into the cache unless already there; True when it was just cloned."""
        if self.mirror.is_dir():
            return False
        partial = self.mirror.with_name(self.mirror.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by a crashed clone (we hold the lock)
        self.log(f"source: cloning {self.url} into the cache")
        proc = self.git("clone", "--mirror", "--quiet", "--", self.url, str(partial), network=True)
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise SourceError(f"cannot fetch {self.url}: {self.git.reason(proc)}")
        self.git("config", "gc.auto", "0", cwd=partial)  # working copies borrow its objects: never prune
        partial.rename(self.mirror)
        return True

    def fetch(self) -> None:
        self.log(f"source: fetching {self.url}")
        proc = self.git("fetch", "--quiet", "--prune", "origin", cwd=self.mirror, network=True)
        if proc.returncode != 0:
            raise SourceError(f"cannot fetch {self.url}: {self.git.reason(proc)}")

    def commit_in_mirror(self, commit: str, fetched: bool) -> str:
        """``commit`` from the mirror, after one fetch when missing (another worker may have fetched)."""
        if self.has_commit(commit):
            if not fetched:
                self.log(f"source: cache hit ({short(commit)} already fetched)")
            return self.rev_parse(commit)
        if not fetched:
            self.fetch()
            if self.has_commit(commit):
                return self.rev_parse(commit)
        raise SourceError(f"commit {short(commit)} does not exist in {self.url}")

    def tip(self, branch: str | None) -> str:
        ref = f"refs/heads/{branch}" if branch else "HEAD"
        proc = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=self.mirror)
        if proc.returncode != 0:
            what = f"branch {branch}" if branch else "a default branch"
            raise SourceError(f"{what} does not exist in {self.url}")
        return proc.stdout.strip()

    def has_commit(self, commit: str) -> bool:
        return self.git("cat-file", "-e", f"{commit}^{{commit}}", cwd=self.mirror).returncode == 0

    def rev_parse(self, commit: str) -> str:
        return self.git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=self.mirror).stdout.strip()

    # -- the working copy --------------------------------------------------------------------

    def working_copy(self, commit: str, diff: str | None, dest: Path) -> None:
        """Clone the mirror into ``dest`` at ``commit`` and apply ``diff``; ``dest`` is removed on failure."""
        existed = dest.exists()
        try:
            with locked(self.lock, exclusive=False):
                self.clone_local(commit, dest)
            self.log(f"source: checked out {short(commit)}")
            if diff:
                self.apply_diff(dest, diff, commit)
                files = count_files(diff)
                self.log(f"source: applied uncommitted changes ({files} file{'' if files == 1 else 's'})")
        except BaseException:
            if not existed:
                shutil.rmtree(dest, ignore_errors=True)
            raise

    def clone_local(self, commit: str, dest: Path) -> None:
        proc = self.git("clone", "--shared", "--no-checkout", "--quiet", "--", str(self.mirror), str(dest))
        if proc.returncode != 0:
            raise SourceError(f"cannot check out {self.url} into {dest}: {self.git.reason(proc)}")
        self.git("remote", "set-url", "origin", self.url, cwd=dest)  # the task sees its real origin
        proc = self.git("checkout", "--detach", "--quiet", commit, cwd=dest)
        if proc.returncode != 0:
            raise SourceError(f"cannot check out {short(commit)} of {self.url}: {self.git.reason(proc)}")

    def apply_diff(self, dest: Path, diff: str, commit: str) -> None:
        """``git apply`` the recorded diff in ``dest`` (from a temp file outside the working copy)."""
        with tempfile.TemporaryDirectory(prefix="trainyard-diff-") as folder:
            patch = Path(folder) / "changes.diff"
            patch.write_bytes(diff.encode("utf-8", "surrogateescape"))
            proc = self.git("apply", "--whitespace=nowarn", str(patch), cwd=dest)
        if proc.returncode != 0:
            reason = self.git.reason(proc)
            raise SourceError(f"the recorded uncommitted diff no longer applies to {short(commit)}: {reason}")


def _check_ref(script: Script) -> None:
    """Refuse commit / branch values git would read as options."""
    for what, value in (("commit", script.commit), ("branch", script.branch)):
        if value is not None and (not value.strip() or value.startswith("-")):
            raise SourceError(f"invalid {what} {value!r} in the task's script")
