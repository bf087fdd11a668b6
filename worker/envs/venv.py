"""The venv builder: a virtualenv for the wanted Python, requirements installed with uv or pip."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..launch import PrepareError
from .spec import EnvSpec, plural, register
from .tools import find_python, find_uv, python_version

if TYPE_CHECKING:
    from .cache import EnvCache


class VenvBuilder:
    kind = "venv"

    def family(self, cache: EnvCache) -> str:
        return self.installer(cache)

    def installer(self, cache: EnvCache) -> str:
        """ "uv" or "pip", as the cache's ``installer`` setting asks and this host allows."""
        if cache.installer == "pip":
            return "pip"
        uv = find_uv()
        if uv is None and cache.installer == "uv":
            raise PrepareError("installer uv is not available on this worker (no uv on PATH, no uv module)")
        return "uv" if uv else "pip"

    def build(
        self, cache: EnvCache, key: str, spec: EnvSpec, folder: Path, requirements: list[str]
    ) -> tuple[str, list[str]]:
        version = python_version(spec.python)
        interpreter = find_python(version)
        installer = self.installer(cache)
        cache.log(
            f"environment {key}: building venv (python {version}, "
            f"{plural(len(requirements), 'requirement')}) with {installer}"
        )
        cache.run([sys.executable, "-m", "virtualenv", "--python", interpreter, str(folder)], "creating the virtualenv")
        python = folder / "bin" / "python"
        uv = find_uv() if installer == "uv" else None
        if requirements:
            req_file = cache.requirements_file(folder, requirements)
            extra = [arg for url in spec.extra_index_urls if url.strip() for arg in ("--extra-index-url", url.strip())]
            if uv:
                argv = [*uv, "pip", "install", "--python", str(python), *extra, "-r", str(req_file)]
            else:
                argv = [str(python), "-m", "pip", "install", *extra, "-r", str(req_file)]
            cache.run(argv, f"{installer} install of {plural(len(requirements), 'requirement')}")
        if uv:
            frozen = cache.run([*uv, "pip", "freeze", "--python", str(python)], "listing installed packages")
        else:
            frozen = cache.run([str(python), "-m", "pip", "freeze", "--all"], "listing installed packages")
        return installer, [s.strip() for s in frozen.splitlines() if s.strip()]


register(VenvBuilder())
