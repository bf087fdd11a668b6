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
import functools
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..queues.record import ExecutionMode, Script
from .launch import PrepareError

METADATA = "trainyard-env.json"
REQUIREMENTS = "trainyard-requirements.txt"
KINDS = ("venv", "conda")
INSTALLERS = ("auto", "uv", "pip")
CONDA_TOOLS = ("micromamba", "mamba", "conda")
TAIL_LINES = 10
TAIL_CHARS = 1500
# settings of the worker's own environment that would send installs or imports elsewhere
_SCRUBBED_ENV = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "CONDA_PREFIX")
_KEY_RE = re.compile(r"^[0-9a-f]{16}$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_VERSION_RE = re.compile(r"^(?:python)?(\d+)\.(\d+)(?:\.\d+)?$")
_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$")


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


# -- what defines an environment ------------------------------------------------------------------


def python_version(wanted: str | None) -> str:
    """``"major.minor"`` for a wanted version ("3.11", "3.11.4", "python3.11"); None: the worker's own."""
    if wanted is None or not str(wanted).strip():
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    match = _VERSION_RE.match(str(wanted).strip())
    if not match:
        raise PrepareError(f"python version {wanted!r} is not of the form 3.11")
    return f"{match.group(1)}.{match.group(2)}"


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
        if self.kind not in KINDS:
            raise ValueError(f"environment kind must be one of {', '.join(KINDS)}, not {self.kind!r}")

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
        family = installer_family(spec.kind, "uv" if spec.kind == "venv" and _find_uv() else "pip")
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


# -- tools on this host ---------------------------------------------------------------------------


def _works(argv: list[str]) -> str | None:
    """stdout of a quick probe command, or None when it cannot run or fails."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


@functools.cache
def _find_uv() -> list[str] | None:
    """argv prefix that runs uv: the ``uv`` executable on PATH, else ``python -m uv``; None without uv.
    Looked up once per worker process (it runs ``uv --version``)."""
    exe = shutil.which("uv")
    if exe and _works([exe, "--version"]) is not None:
        return [exe]
    if importlib.util.find_spec("uv") is not None and _works([sys.executable, "-m", "uv", "--version"]) is not None:
        return [sys.executable, "-m", "uv"]
    return None


def find_python(version: str) -> str:
    """The interpreter for ``major.minor``: the worker's own, else ``python3.X`` on PATH."""
    if version == python_version(None):
        return sys.executable
    exe = shutil.which(f"python{version}")
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    if exe and (_works([exe, "-c", probe]) or "").strip() == version:
        return exe
    raise PrepareError(f"python {version} is not available on this worker")


def find_conda() -> str:
    """``TRAINYARD_CONDA_EXE``, else micromamba, mamba or conda on PATH."""
    configured = os.environ.get("TRAINYARD_CONDA_EXE", "").strip()
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise PrepareError(f"TRAINYARD_CONDA_EXE={configured} is not an executable file")
        return configured
    for tool in CONDA_TOOLS:
        exe = shutil.which(tool)
        if exe:
            return exe
    raise PrepareError("conda mode needs conda, mamba or micromamba on the worker's PATH; none found")


def conda_tool_name(exe: str) -> str:
    name = Path(exe).name.split(".")[0].lower()
    return name if name in CONDA_TOOLS else "conda"


def _install_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env.setdefault("PIP_NO_INPUT", "1")
    return env


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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
        self._uv: list[str] | None = None  # argv prefix running uv, once looked up
        self._uv_checked = False

    # -- public API -------------------------------------------------------------------------------
    def key(self, spec: EnvSpec) -> str:
        """The cache key of ``spec`` with this cache's installer."""
        return env_key(spec, installer_family(spec.kind, self._venv_installer() if spec.kind == "venv" else "pip"))

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
            if spec.kind == "venv":
                installer, packages = self._build_venv(key, spec, folder, version, requirements)
            else:
                installer, packages = self._build_conda(key, spec, folder, version, requirements)
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
            f"environment {key}: installed {_plural(len(packages), 'package')} in {time.monotonic() - started:.1f}s"
        )
        return self._built(key, meta, cached=False)

    def _venv_installer(self) -> str:
        if self.installer == "pip":
            return "pip"
        if not self._uv_checked:
            self._uv, self._uv_checked = _find_uv(), True
        if self._uv is None and self.installer == "uv":
            raise PrepareError("installer uv is not available on this worker (no uv on PATH, no uv module)")
        return "uv" if self._uv else "pip"

    def _build_venv(
        self, key: str, spec: EnvSpec, folder: Path, version: str, requirements: list[str]
    ) -> tuple[str, list[str]]:
        interpreter = find_python(version)
        installer = self._venv_installer()
        self.log(
            f"environment {key}: building venv (python {version}, "
            f"{_plural(len(requirements), 'requirement')}) with {installer}"
        )
        self._run([sys.executable, "-m", "virtualenv", "--python", interpreter, str(folder)], "creating the virtualenv")
        python = folder / "bin" / "python"
        uv = self._uv if installer == "uv" else None
        if requirements:
            req_file = self._requirements_file(folder, requirements)
            extra = [arg for url in spec.extra_index_urls if url.strip() for arg in ("--extra-index-url", url.strip())]
            if uv:
                argv = [*uv, "pip", "install", "--python", str(python), *extra, "-r", str(req_file)]
            else:
                argv = [str(python), "-m", "pip", "install", *extra, "-r", str(req_file)]
            self._run(argv, f"{installer} install of {_plural(len(requirements), 'requirement')}")
        if uv:
            frozen = self._run([*uv, "pip", "freeze", "--python", str(python)], "listing installed packages")
        else:
            frozen = self._run([str(python), "-m", "pip", "freeze", "--all"], "listing installed packages")
        return installer, [s.strip() for s in frozen.splitlines() if s.strip()]

    def _build_conda(
        self, key: str, spec: EnvSpec, folder: Path, version: str, requirements: list[str]
    ) -> tuple[str, list[str]]:
        exe = find_conda()
        installer = f"{conda_tool_name(exe)}+pip"
        packages = [" ".join(p.split()) for p in spec.conda_packages if p.strip()]
        self.log(
            f"environment {key}: building conda (python {version}, {_plural(len(packages), 'conda package')}, "
            f"{_plural(len(requirements), 'requirement')}) with {installer}"
        )
        env = _install_env()
        if spec.cuda:
            env["CONDA_OVERRIDE_CUDA"] = spec.cuda  # pick CUDA builds even where no driver is visible
        self._run(
            [exe, "create", "-y", "-p", str(folder), f"python={version}", *packages],
            f"{conda_tool_name(exe)} create",
            env=env,
        )
        python = folder / "bin" / "python"
        if requirements:
            req_file = self._requirements_file(folder, requirements)
            extra = [arg for url in spec.extra_index_urls if url.strip() for arg in ("--extra-index-url", url.strip())]
            self._run(
                [str(python), "-m", "pip", "install", *extra, "-r", str(req_file)],
                f"pip install of {_plural(len(requirements), 'requirement')}",
            )
        frozen = self._run([str(python), "-m", "pip", "freeze", "--all"], "listing installed packages")
        return installer, [s.strip() for s in frozen.splitlines() if s.strip()]

    @staticmethod
    def _requirements_file(folder: Path, requirements: list[str]) -> Path:
        path = folder / REQUIREMENTS
        path.write_text("".join(f"{line}\n" for line in requirements))
        return path

    def _run(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> str:
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
                env=env if env is not None else _install_env(),
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
