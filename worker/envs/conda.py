"""The conda builder: a conda prefix (conda, mamba or micromamba) with conda packages, then pip requirements."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .spec import EnvSpec, plural, register
from .tools import conda_tool_name, find_conda, install_env, python_version

if TYPE_CHECKING:
    from .cache import EnvCache


class CondaBuilder:
    kind = "conda"

    def family(self, cache: EnvCache) -> str:
        return "conda"

    def build(
        self, cache: EnvCache, key: str, spec: EnvSpec, folder: Path, requirements: list[str]
    ) -> tuple[str, list[str]]:
        version = python_version(spec.python)
        exe = find_conda()
        installer = f"{conda_tool_name(exe)}+pip"
        packages = [" ".join(p.split()) for p in spec.conda_packages if p.strip()]
        cache.log(
            f"environment {key}: building conda (python {version}, {plural(len(packages), 'conda package')}, "
            f"{plural(len(requirements), 'requirement')}) with {installer}"
        )
        env = install_env()
        if spec.cuda:
            env["CONDA_OVERRIDE_CUDA"] = spec.cuda  # pick CUDA builds even where no driver is visible
        cache.run(
            [exe, "create", "-y", "-p", str(folder), f"python={version}", *packages],
            f"{conda_tool_name(exe)} create",
            env=env,
        )
        python = folder / "bin" / "python"
        if requirements:
            req_file = cache.requirements_file(folder, requirements)
            extra = [arg for url in spec.extra_index_urls if url.strip() for arg in ("--extra-index-url", url.strip())]
            cache.run(
                [str(python), "-m", "pip", "install", *extra, "-r", str(req_file)],
                f"pip install of {plural(len(requirements), 'requirement')}",
            )
        frozen = cache.run([str(python), "-m", "pip", "freeze", "--all"], "listing installed packages")
        return installer, [s.strip() for s in frozen.splitlines() if s.strip()]


register(CondaBuilder())
