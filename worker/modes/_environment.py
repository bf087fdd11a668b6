"""What venv and conda modes share: the task runs on this host in a cached environment."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from .. import tasklib
from ..envs import EnvCache, EnvSpec
from ..gpus import default_nvml
from ..launch import LaunchSpec
from .base import Job, Launched
from .local import LocalLaunch


class EnvironmentMode:
    """A mode whose task runs in an environment built by the environment cache's ``name`` builder."""

    def __init__(self, name: str, prefix_variable: str):
        self.name = name
        self.prefix_variable = prefix_variable  # VIRTUAL_ENV, CONDA_PREFIX

    def prepare(self, job: Job) -> LaunchSpec:
        record = job.record
        cuda = default_nvml.driver_version() if record.runtime.gpus else None  # part of the environment's key
        spec = EnvSpec.from_script(self.name, record.script, cuda=cuda)
        s = job.settings
        cache = EnvCache(s.home / "envs", job.log, max_envs=s.env_cache_size, installer=s.installer)
        holder = contextlib.ExitStack()
        built = holder.enter_context(cache.ensure_and_hold(spec))
        try:
            job.record_environment(
                {
                    "mode": self.name,
                    "key": built.key,
                    "cached": built.cached,
                    "installer": built.installer,
                    "packages": built.packages,
                }
            )
            argv, workdir = job.argv(str(built.python))
            env = job.host_env()
            env[self.prefix_variable] = str(built.path)
            env["PATH"] = f"{Path(built.python).parent}:{env.get('PATH', '')}"
            standalone = not any(r.lower().startswith("trainyard") for r in record.script.requirements)
            env["PYTHONPATH"] = tasklib.with_path(str(tasklib.link(job.run_dir, standalone)), env.get("PYTHONPATH"))
        except BaseException:
            holder.close()
            raise
        return LaunchSpec(argv, workdir or job.run_dir, env, mode=self.name, release=[holder.close])

    def launch(self, spec: LaunchSpec, log: Callable[[str], None]) -> Launched:
        return LocalLaunch(spec)
