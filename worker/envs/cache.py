"""Per-task Python environments (virtualenv or conda), built once per host and cached by content.

Layout of a cache folder ``root``::

    root/<key>              -> .<key>-<random>   (symlink, created by an atomic rename)
    root/.<key>-<random>/   the environment itself; trainyard-env.json inside marks it complete
    root/<key>.lock         in-use lock: SHARED while a worker uses (or ensures) the env,
                            EXCLUSIVE only while it is evicted
    root/<key>.build.lock   build lock: EXCLUSIVE while one process builds the env

An environment is built in its hidden folder beside its final name and appears under
``root/<key>`` only after a successful build (symlink renamed into place). It is never moved:
a venv or conda prefix holds absolute paths (console-script shebangs, conda's prefix-patched
files), so renaming the folder itself would break it. A failed build removes its folder.

In-use leases: ``EnvCache.ensure_and_hold(spec)`` takes the shared in-use lock *before* it
looks for or builds the env and keeps it until the ``with`` block ends, so an env cannot be
evicted between being built and being used. Eviction only takes a non-blocking exclusive lock,
so it skips every env somebody holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from ..launch import PrepareError
from .spec import BUILDERS, BuiltEnv, EnvSpec, InstallError, env_key, plural, python_version, requirement_lines
from .tools import install_env

METADATA = "trainyard-env.json"
REQUIREMENTS = "trainyard-requirements.txt"
INSTALLERS = ("auto", "uv", "pip")
_KEY_RE = re.compile(r"^[0-9a-f]{16}$")


# -- locks ----------------------------------------------------------------------------------------


def _lock(path: Path, flags: int) -> int | None:
    """flock ``path`` (created if needed) and return its fd; None when LOCK_NB and it is busy.

    Lock files can be removed by an evictor holding the exclusive lock, so after locking we check
    that the fd still is the file at ``path`` and start again if not."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, flags)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only fd of the open file releases its flock


# -- the cache ------------------------------------------------------------------------------------


class EnvCache:
    """Environments under ``root``, keyed by ``env_key``; at most ``max_envs`` kept (LRU).

    ``installer``: "auto" (uv when available, else pip), "uv" or "pip", for venv requirements.
    Conda envs get their conda packages from the conda tool and pip requirements from pip."""

    def __init__(
        self,
        root: Path,
        log: Callable[[str], None] = lambda s: None,
        max_envs: int = 20,
        installer: str = "auto",
        timeout_s: float = 3600.0,
    ):
        if installer not in INSTALLERS:
            raise ValueError(f"installer must be one of {', '.join(INSTALLERS)}, not {installer!r}")
        if max_envs < 1:
            raise ValueError("max_envs must be at least 1")
        self.root = Path(root)
        self.log = log
        self.max_envs = max_envs
        self.installer = installer
        self.timeout_s = timeout_s

    # -- public API -------------------------------------------------------------------------------
    def key(self, spec: EnvSpec) -> str:
        """The cache key of ``spec`` with this cache's installer."""
        return env_key(spec, BUILDERS[spec.kind].family(self))

    def ensure(self, spec: EnvSpec) -> BuiltEnv:
        """Build ``spec``'s env unless cached. Holds nothing on return: a task that is about to run
        in it should use ``ensure_and_hold`` so that it cannot be evicted in between."""
        with self.ensure_and_hold(spec) as env:
            return env

    @contextlib.contextmanager
    def ensure_and_hold(self, spec: EnvSpec) -> Iterator[BuiltEnv]:
        """Build or reuse ``spec``'s env and keep it in use (not evictable) until the block ends."""
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.key(spec)
        use_fd = _lock(self._use_lock(key), fcntl.LOCK_SH)
        try:
            env = self._hit(key) or self._build_once(key, spec)
        except BaseException:
            _unlock(use_fd)
            self._discard(key, only_incomplete=True)  # a failed build leaves no lock files either
            raise
        try:
            yield env
        finally:
            _unlock(use_fd)

    @contextlib.contextmanager
    def use(self, key: str) -> Iterator[BuiltEnv]:
        """Hold the cached env ``key`` in use (shared lock) for the block; PrepareError if absent."""
        if not _KEY_RE.match(key):
            raise PrepareError(f"{key!r} is not an environment key")
        self.root.mkdir(parents=True, exist_ok=True)
        use_fd = _lock(self._use_lock(key), fcntl.LOCK_SH)
        env = self._hit(key)
        if env is None:
            _unlock(use_fd)
            self._discard(key, only_incomplete=True)  # drop the lock file this call created
            raise PrepareError(f"environment {key} is not in the cache at {self.root}")
        try:
            yield env
        finally:
            _unlock(use_fd)

    def entries(self) -> list[dict]:
        """Metadata of every complete env, least recently used first."""
        found = []
        for key in self._keys():
            meta = self._metadata(key)
            if meta is not None:
                found.append(meta)
        return sorted(found, key=lambda m: m.get("last_used", 0.0))

    def evict(self, keep: int | None = None) -> list[str]:
        """Remove the least recently used envs nobody holds until at most ``keep`` (default
        ``max_envs``) remain; also clears what crashed builds left. Returns the evicted keys."""
        keep = self.max_envs if keep is None else keep
        evicted = []
        entries = self.entries()
        excess = len(entries) - keep
        for meta in entries:
            if excess <= 0:
                break
            if self._discard(meta["key"]):
                evicted.append(meta["key"])
                excess -= 1
                self.log(f"environment {meta['key']}: evicted (least recently used)")
        for key in self._orphan_keys() - {m["key"] for m in entries}:
            self._discard(key, only_incomplete=True)
        return evicted

    # -- paths and metadata -----------------------------------------------------------------------
    def _use_lock(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    def _build_lock(self, key: str) -> Path:
        return self.root / f"{key}.build.lock"

    def _keys(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if _KEY_RE.match(p.name)]

    def _orphan_keys(self) -> set[str]:
        """Keys with leftovers: lock files or hidden build folders."""
        keys = set()
        if self.root.is_dir():
            for p in self.root.iterdir():
                name = p.name.lstrip(".")[:16]
                if _KEY_RE.match(name) and p.name != name:
                    keys.add(name)
        return keys

    def _metadata(self, key: str) -> dict | None:
        try:
            meta = json.loads((self.root / key / METADATA).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("key") == key else None

    def _write_metadata(self, folder: Path, meta: dict) -> None:
        tmp = folder / f".{METADATA}.{secrets.token_hex(4)}"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder / METADATA)

    def _hit(self, key: str) -> BuiltEnv | None:
        """The cached env ``key`` with last_used updated, or None (caller holds its in-use lock)."""
        meta = self._metadata(key)
        if meta is None:
            return None
        meta["last_used"] = time.time()
        with contextlib.suppress(OSError):
            self._write_metadata(self.root / key, meta)
        self.log(f"environment {key}: cache hit")
        return self._built(key, meta, cached=True)

    def _built(self, key: str, meta: dict, cached: bool) -> BuiltEnv:
        path = self.root / key
        return BuiltEnv(
            key=key,
            path=path,
            python=path / "bin" / "python",
            cached=cached,
            installer=meta.get("installer", ""),
            packages=list(meta.get("packages", [])),
        )

    def _discard(self, key: str, only_incomplete: bool = False) -> bool:
        """Remove env ``key`` and its lock files unless somebody holds it (or, with
        ``only_incomplete``, it is complete); True when removed."""
        use_fd = _lock(self._use_lock(key), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if use_fd is None:
            return False
        try:
            if only_incomplete and self._metadata(key) is not None:
                return False
            link = self.root / key
            if link.is_symlink():
                link.unlink()  # the env is gone at once; its folder goes next
            elif link.is_dir():
                shutil.rmtree(link, ignore_errors=True)
            self._remove_build_folders(key)
            with contextlib.suppress(FileNotFoundError):
                self._build_lock(key).unlink()
            self._use_lock(key).unlink()  # while locked: late openers notice and reopen
            return True
        finally:
            _unlock(use_fd)

    def _remove_build_folders(self, key: str) -> None:
        """Hidden build folders (and never-renamed links) of ``key``; callers hold its locks."""
        for folder in self.root.glob(f".{key}-*"):
            if folder.is_symlink():  # a link that was never renamed into place
                folder.unlink()
            else:
                shutil.rmtree(folder, ignore_errors=True)

    # -- building ---------------------------------------------------------------------------------
    def _build_once(self, key: str, spec: EnvSpec) -> BuiltEnv:
        """Build under the build lock unless another process built it meanwhile (caller holds use lock)."""
        build_fd = _lock(self._build_lock(key), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if build_fd is None:
            self.log(f"environment {key}: another worker is building it; waiting")
            build_fd = _lock(self._build_lock(key), fcntl.LOCK_EX)
        try:
            env = self._hit(key)
            if env is not None:
                return env
            env = self._build(key, spec)
        finally:
            _unlock(build_fd)
        self.evict()
        return env

    def _build(self, key: str, spec: EnvSpec) -> BuiltEnv:
        link = self.root / key
        if link.is_symlink():  # dangling or incomplete: start again
            link.unlink()
        elif link.exists():
            shutil.rmtree(link, ignore_errors=True)
        self._remove_build_folders(key)  # what crashed builds left
        folder = self.root / f".{key}-{secrets.token_hex(4)}"
        version = python_version(spec.python)
        requirements = requirement_lines(spec.requirements)
        started = time.monotonic()
        try:
            installer, packages = BUILDERS[spec.kind].build(self, key, spec, folder, requirements)
            now = time.time()
            meta = {
                "key": key,
                "spec": asdict(spec),
                "python": version,
                "installer": installer,
                "packages": packages,
                "created": now,
                "last_used": now,
                "build_seconds": round(time.monotonic() - started, 3),
            }
            self._write_metadata(folder, meta)
            tmp_link = self.root / f".{key}-{secrets.token_hex(4)}.link"
            os.symlink(folder.name, tmp_link)
            os.replace(tmp_link, link)  # the env appears, complete, under its key
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            self._remove_build_folders(key)
            raise
        self.log(
            f"environment {key}: installed {plural(len(packages), 'package')} in {time.monotonic() - started:.1f}s"
        )
        return self._built(key, meta, cached=False)

    @staticmethod
    def requirements_file(folder: Path, requirements: list[str]) -> Path:
        path = folder / REQUIREMENTS
        path.write_text("".join(f"{line}\n" for line in requirements))
        return path

    def run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
        """Run an installer step in its own process group; its stdout, or InstallError naming
        ``what`` with the last lines of its output (stdout, then stderr)."""
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env=env if env is not None else install_env(),
                start_new_session=True,
            )
        except OSError as exc:
            raise InstallError(f"{what} failed: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise InstallError(f"{what} timed out after {self.timeout_s:.0f}s", f"{out}\n{err}") from None
        except BaseException:
            _kill_group(proc)
            raise
        if proc.returncode != 0:
            raise InstallError(f"{what} failed (exit {proc.returncode})", f"{out}\n{err}")
        return out


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill an installer and whatever it started (pip builds run in subprocesses)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
