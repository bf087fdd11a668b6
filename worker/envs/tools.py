"""Tools on this host that environments are built with: Pythons, uv, conda (looked up, not installed)."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ...queues import config
from ..launch import PrepareError

CONDA_TOOLS = ("micromamba", "mamba", "conda")
# settings of the worker's own environment that would send installs or imports elsewhere
_SCRUBBED_ENV = ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "CONDA_PREFIX")
_VERSION_RE = re.compile(r"^(?:python)?(\d+)\.(\d+)(?:\.\d+)?$")


def python_version(wanted: str | None) -> str:
    """``"major.minor"`` for a wanted version ("3.11", "3.11.4", "python3.11"); None: the worker's own."""
    if wanted is None or not str(wanted).strip():
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    match = _VERSION_RE.match(str(wanted).strip())
    if not match:
        raise PrepareError(f"python version {wanted!r} is not of the form 3.11")
    return f"{match.group(1)}.{match.group(2)}"


def _works(argv: list[str]) -> str | None:
    """stdout of a quick probe command, or None when it cannot run or fails."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


@functools.cache
def find_uv() -> list[str] | None:
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
    configured = config.current().conda_exe
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


def install_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env.setdefault("PIP_NO_INPUT", "1")
    return env
