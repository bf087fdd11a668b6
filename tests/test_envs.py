"""Task environments: real virtualenvs with real PyPI installs (uv and pip), the per-host build
lock across processes, failures that leave nothing behind, LRU eviction that spares envs in use,
and conda mode against tests/standin_conda.py (conda itself cannot be installed here)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trainyard.queues.record import ExecutionMode, Script
from trainyard.worker.envs import (
    METADATA,
    EnvCache,
    EnvSpec,
    InstallError,
    env_key,
    installer_family,
    last_lines,
)
from trainyard.worker.launch import PrepareError

HERE = Path(__file__).resolve().parent
STANDIN_CONDA = HERE / "standin_conda.py"
OWN = f"{sys.version_info.major}.{sys.version_info.minor}"
SIX = "six==1.16.0"
MISSING = "this-package-does-not-exist-trainyard==1.0"


class Log(list):
    """Collects log lines; ``count`` of lines containing a text."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def count_with(self, text: str) -> int:
        return sum(text in line for line in self)


def run_python(python: Path, code: str) -> str:
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="session")
def uv_root(tmp_path_factory) -> Path:
    """One cache folder for the tests that install from PyPI with uv."""
    return tmp_path_factory.mktemp("envs-uv")


@pytest.fixture(scope="session")
def six_env(uv_root):
    """A venv with six, built once with uv: (env, log of the build)."""
    log = Log()
    env = EnvCache(uv_root, log=log, installer="uv").ensure(EnvSpec("venv", requirements=(SIX,)))
    return env, log


# -- keys and specs ---------------------------------------------------------------------------------


def test_env_key_is_canonical():
    base = EnvSpec("venv", python=None, requirements=("Six == 1.16.0", "idna>=3"))
    same = EnvSpec("venv", python=OWN, requirements=("idna >= 3  # comment", "", "six==1.16.0"))
    assert env_key(base, "uv") == env_key(same, "uv")
    assert len(env_key(base, "uv")) == 16
    int(env_key(base, "uv"), 16)
    others = [
        EnvSpec("venv", python="3.99", requirements=base.requirements),
        EnvSpec("venv", requirements=("six==1.15.0", "idna>=3")),
        EnvSpec("venv", requirements=base.requirements, extra_index_urls=("https://example.org/simple",)),
        EnvSpec("venv", requirements=base.requirements, cuda="12.1"),
        EnvSpec("conda", requirements=base.requirements),
    ]
    keys = {env_key(base, "uv"), env_key(base, "pip"), *(env_key(s, "uv") for s in others)}
    assert len(keys) == 2 + len(others)
    assert installer_family("conda", "uv") == "conda"
    with pytest.raises(ValueError):
        EnvSpec("docker")
    with pytest.raises(PrepareError, match="not of the form"):
        env_key(EnvSpec("venv", python="latest"), "uv")


def test_spec_from_script():
    script = Script(
        python="3.11", requirements=["six"], conda_packages=["numpy"], extra_index_urls=["https://x/simple"]
    )
    spec = EnvSpec.from_script(ExecutionMode.CONDA, script, cuda="12.1")
    assert spec == EnvSpec("conda", "3.11", ("six",), ("numpy",), ("https://x/simple",), "12.1")
    assert EnvSpec.from_script("venv", Script()).requirements == ()


def test_install_error_keeps_the_last_lines():
    output = "\n".join(f"line {i}" for i in range(30)) + "\n\n"
    err = InstallError("pip install of 1 requirement failed (exit 1)", output)
    assert str(err) == "pip install of 1 requirement failed (exit 1): " + " | ".join(f"line {i}" for i in range(20, 30))
    assert isinstance(err, PrepareError)
    long = last_lines("\n".join("x" * 400 for _ in range(10)))
    assert sum(len(s) + 3 for s in long) <= 1500 and long
    assert len(" | ".join(last_lines("y" * 5000))) <= 1500
    assert str(InstallError("creating the virtualenv failed")) == "creating the virtualenv failed"


# -- venv builds ------------------------------------------------------------------------------------


def test_venv_with_uv_installs_the_requirement(six_env, uv_root):
    env, log = six_env
    assert not env.cached and env.installer == "uv"
    assert SIX in env.packages
    assert run_python(env.python, "import six; print(six.__version__)") == "1.16.0"
    assert run_python(env.python, "import sys; print(sys.prefix != sys.base_prefix)") == "True"
    assert log.count_with(f"environment {env.key}: building venv (python {OWN}, 1 requirement) with uv") == 1
    assert log.count_with(f"environment {env.key}: installed {len(env.packages)} packages in ") == 1
    meta = json.loads((uv_root / env.key / METADATA).read_text())
    assert meta["key"] == env.key and meta["installer"] == "uv" and meta["packages"] == env.packages
    assert meta["spec"]["requirements"] == [SIX] and meta["created"] <= meta["last_used"]
    # built beside its final name, which appeared (as a link) only when complete
    assert (uv_root / env.key).is_symlink() and (uv_root / env.key).resolve().parent == uv_root


def test_second_ensure_is_a_cache_hit(six_env, uv_root):
    first, _ = six_env
    before = json.loads((uv_root / first.key / METADATA).read_text())["last_used"]
    log = Log()
    again = EnvCache(uv_root, log=log, installer="uv").ensure(EnvSpec("venv", requirements=(" six == 1.16.0 ",)))
    assert again.cached and again.key == first.key and again.packages == first.packages
    assert log == [f"environment {first.key}: cache hit"]
    assert json.loads((uv_root / first.key / METADATA).read_text())["last_used"] > before


def test_venv_with_pip_forced(tmp_path):
    log = Log()
    cache = EnvCache(tmp_path / "envs", log=log, installer="pip")
    spec = EnvSpec("venv", requirements=("idna==3.7",))
    env = cache.ensure(spec)
    assert not env.cached and env.installer == "pip" and "idna==3.7" in env.packages
    assert log.count_with("building venv") == 1 and log.count_with("with pip") == 1
    assert run_python(env.python, "import idna; print(idna.__version__)") == "3.7"
    # console scripts still run: the env was never moved after pip wrote their shebangs
    pip = subprocess.run([str(env.path / "bin" / "pip"), "--version"], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    assert cache.key(spec) != EnvCache(tmp_path / "envs", installer="uv").key(spec)


def build_in_child(root: str, log_path: str, barrier, results) -> None:
    """One of two worker processes ensuring the same env at the same moment."""
    log_file = Path(log_path)

    def log(line: str) -> None:
        with log_file.open("a") as f:
            f.write(line + "\n")

    cache = EnvCache(Path(root), log=log, installer="uv")
    barrier.wait(timeout=60)
    env = cache.ensure(EnvSpec("venv", requirements=(SIX,)))
    results.put((env.key, env.cached))


def test_two_processes_build_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    logs = [tmp_path / f"log{i}.txt" for i in range(2)]
    procs = [
        ctx.Process(target=build_in_child, args=(str(tmp_path / "envs"), str(log), barrier, results)) for log in logs
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=240)
        assert proc.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes[0][0] == outcomes[1][0]
    assert [cached for _, cached in outcomes] == [False, True]
    lines = [line for log in logs for line in log.read_text().splitlines()]
    assert sum("building venv" in line for line in lines) == 1
    assert sum("cache hit" in line for line in lines) == 1


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_bad_requirement_fails_and_leaves_nothing(tmp_path, installer):
    root = tmp_path / "envs"
    cache = EnvCache(root, installer=installer)
    with pytest.raises(InstallError) as info:
        cache.ensure(EnvSpec("venv", requirements=(MISSING,)))
    message = str(info.value)
    assert message.startswith(f"{installer} install of 1 requirement failed (exit ")
    assert "this-package-does-not-exist-trainyard" in message.split(": ", 1)[1]
    assert "\n" not in message and len(message) < 1700
    assert info.value.tail and len(info.value.tail) <= 10
    assert leftovers(root) == []


def test_python_version_not_available(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    root = tmp_path / "envs"
    with pytest.raises(PrepareError) as info:
        EnvCache(root, installer="pip").ensure(EnvSpec("venv", python="3.9"))
    assert str(info.value) == "python 3.9 is not available on this worker"
    assert not isinstance(info.value, InstallError)
    assert leftovers(root) == []


def other_python() -> tuple[str, str] | None:
    """(version, path) of an installed CPython other than the one running the tests (3.9+:
    virtualenv's bundled seeder has no pip for older ones)."""
    for minor in range(9, 15):
        version = f"3.{minor}"
        if version == OWN:
            continue
        candidates = [shutil.which(f"python{version}")]
        candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
        for exe in filter(None, candidates):
            probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True)
            if probe.returncode == 0 and probe.stdout.decode().strip() == str((3, minor)):
                return version, exe
    return None


def test_venv_with_another_python_from_path(tmp_path, monkeypatch):
    found = other_python()
    if found is None:
        pytest.skip("no Python other than the worker's own is installed")
    version, exe = found
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{version}").symlink_to(exe)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = Log()
    env = EnvCache(tmp_path / "envs", log=log, installer="uv").ensure(EnvSpec("venv", python=version))
    assert run_python(env.python, "import sys; print('%d.%d' % sys.version_info[:2])") == version
    assert log.count_with(f"building venv (python {version}, 0 requirements)") == 1


# -- eviction ---------------------------------------------------------------------------------------


def no_install_spec(tag: str) -> EnvSpec:
    """Distinct envs without requirements (fast): they differ by their cuda tag."""
    return EnvSpec("venv", cuda=tag)


def test_lru_eviction_keeps_the_most_recently_used(tmp_path):
    root = tmp_path / "envs"
    log = Log()
    cache = EnvCache(root, log=log, max_envs=2, installer="pip")
    a, b = cache.ensure(no_install_spec("a")), cache.ensure(no_install_spec("b"))
    assert cache.ensure(no_install_spec("a")).cached  # a is now more recent than b
    c = cache.ensure(no_install_spec("c"))
    assert [m["key"] for m in cache.entries()] == [a.key, c.key]
    assert log.count_with(f"environment {b.key}: evicted") == 1
    assert not any(name.lstrip(".").startswith(b.key) for name in leftovers(root))
    assert run_python(a.python, "print('ok')") == "ok"


def test_eviction_never_takes_an_env_in_use(tmp_path):
    root = tmp_path / "envs"
    cache = EnvCache(root, max_envs=1, installer="pip")
    a = cache.ensure(no_install_spec("a"))
    with cache.use(a.key) as held:
        assert held.cached and held.python == a.python
        with cache.ensure_and_hold(no_install_spec("b")) as b:
            assert not b.cached
            # over the limit, but a is in use and b was just built for its caller: both stay
            assert {m["key"] for m in cache.entries()} == {a.key, b.key}
            assert run_python(a.python, "print('a')") == "a" and run_python(b.python, "print('b')") == "b"
    c = cache.ensure(no_install_spec("c"))  # nothing held now: the two older ones go
    assert [m["key"] for m in cache.entries()] == [c.key]
    with pytest.raises(PrepareError, match="not in the cache"), cache.use(a.key):
        pass
    assert leftovers(root) == sorted([c.key, f"{c.key}.build.lock", f"{c.key}.lock", c.path.resolve().name])


def test_leftovers_of_crashed_builds_are_cleared(tmp_path):
    root = tmp_path / "envs"
    root.mkdir()
    dead = "0123456789abcdef"
    (root / f".{dead}-deadbeef" / "bin").mkdir(parents=True)
    (root / f"{dead}.lock").touch()
    (root / f"{dead}.build.lock").touch()
    cache = EnvCache(root, installer="pip")
    env = cache.ensure(no_install_spec("x"))
    assert not any(dead in name for name in leftovers(root))
    assert env.key in leftovers(root)


# -- conda mode -------------------------------------------------------------------------------------


def standin_conda_exe(folder: Path, name: str = "conda") -> Path:
    """An executable named like the tool that runs tests/standin_conda.py with this interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / name
    exe.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, {str(STANDIN_CONDA)!r}, *sys.argv[1:]])\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def test_conda_env_via_standin(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_CONDA_EXE", str(standin_conda_exe(tmp_path / "bin")))
    log = Log()
    cache = EnvCache(tmp_path / "envs", log=log)
    spec = EnvSpec("conda", requirements=(SIX,), conda_packages=("numpy=1.26", "cudatoolkit"), cuda="12.1")
    env = cache.ensure(spec)
    assert not env.cached and env.installer == "conda+pip" and SIX in env.packages
    assert log.count_with(f"building conda (python {OWN}, 2 conda packages, 1 requirement) with conda+pip") == 1
    recorded = json.loads((env.path / "conda-meta" / "standin-packages.json").read_text())
    assert recorded == {"python": OWN, "packages": ["numpy=1.26", "cudatoolkit"], "cuda_override": "12.1"}
    assert run_python(env.python, "import six; print(six.__version__)") == "1.16.0"
    assert cache.ensure(spec).cached and log.count_with("cache hit") == 1
    assert cache.key(spec) != cache.key(EnvSpec("venv", requirements=(SIX,)))


def test_conda_tool_named_in_installer(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_CONDA_EXE", str(standin_conda_exe(tmp_path / "bin", "micromamba")))
    env = EnvCache(tmp_path / "envs").ensure(EnvSpec("conda"))
    assert env.installer == "micromamba+pip" and env.python.is_file()


def test_conda_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINYARD_CONDA_EXE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    root = tmp_path / "envs"
    with pytest.raises(PrepareError) as info:
        EnvCache(root, installer="pip").ensure(EnvSpec("conda", conda_packages=("numpy",)))
    assert str(info.value) == "conda mode needs conda, mamba or micromamba on the worker's PATH; none found"
    assert leftovers(root) == []


def test_conda_create_failure_is_an_install_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINYARD_CONDA_EXE", str(standin_conda_exe(tmp_path / "bin")))
    root = tmp_path / "envs"
    with pytest.raises(InstallError, match=r"conda create failed \(exit 1\): .*python=3\.2 requested"):
        EnvCache(root).ensure(EnvSpec("conda", python="3.2"))
    assert leftovers(root) == []


def test_standin_conda_rejects_what_it_does_not_know(tmp_path):
    def standin(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(STANDIN_CONDA), *args], capture_output=True, text=True)

    unknown = standin("install", "-y", "numpy")
    assert unknown.returncode == 2 and "invalid choice: 'install'" in unknown.stderr
    no_prefix = standin("create", "-y", "python=3.11")
    assert no_prefix.returncode == 2 and "-p/--prefix" in no_prefix.stderr
    assert not any(tmp_path.iterdir())
