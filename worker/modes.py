"""Preparing a task in its execution mode: source checkout, then local, venv, conda or docker.

The task's own ``execution.mode`` wins; the worker's ``--mode`` (or ``--docker``) is the default.
A mode this worker cannot serve (no Docker engine, no conda) fails the task with the reason
rather than re-queueing it, so a task never bounces between workers that all lack the same thing.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ..queues.record import TaskRecord
from ..queues.store import TaskStore
from . import tasklib
from .docker_mode import CACHE_MOUNT, CODE_MOUNT, LABEL_RUNS, LABEL_TASK, LABEL_WORKER, RUN_MOUNT, DockerSpec
from .envs import EnvCache, EnvSpec
from .gpus import default_nvml, pinning_env
from .launch import LaunchSpec, PrepareError, args_flags, task_env
from .reporter import Reporter
from .source import GitCredentials, SourceCache

MODES = ("local", "venv", "conda", "docker")


@dataclass
class ModeSettings:
    home: Path
    worker: str
    default_mode: str = "local"
    docker_image: str | None = None
    docker_network: str | None = None
    redis_url: str | None = None
    env_cache_size: int = 20
    installer: str = "auto"


class Preparer:
    """Callable the executor uses: (record, run folder, reporter) -> what to start."""

    def __init__(self, settings: ModeSettings, store: TaskStore):
        self.s = settings
        self.store = store
        self.sources_root = settings.home / "git"
        self.envs_root = settings.home / "envs"

    def __call__(self, record: TaskRecord, run_dir: Path, reporter: Reporter) -> LaunchSpec:
        mode = record.execution.mode.value if record.execution.mode else self.s.default_mode
        if record.container.image and not record.execution.mode and self.s.default_mode == "docker":
            mode = "docker"
        reporter.system(f"mode: {mode}")
        if mode != "local" or record.script.repository:
            reporter.start()  # a checkout or an environment may take a while: stream its lines
        code = self._code(record, run_dir, reporter)
        if mode == "local":
            return self._local(record, run_dir, code)
        if mode in ("venv", "conda"):
            return self._env(mode, record, run_dir, code, reporter)
        if mode == "docker":
            return self._docker(record, run_dir, code, reporter)
        raise PrepareError(f"unknown execution mode {mode!r} (one of {', '.join(MODES)})")

    # -- code --------------------------------------------------------------------------------
    def _code(self, record: TaskRecord, run_dir: Path, reporter: Reporter) -> Path | None:
        """The folder holding the task's code (repository root), or None for a plain command."""
        script = record.script
        folder: Path | None = None
        if script.repository:
            local = Path(script.repository)
            if local.is_dir() and not (local / ".git").exists() and not script.commit:
                folder = local  # a plain folder, not a repository: run it in place
            else:
                cache = SourceCache(self.sources_root, reporter.system, GitCredentials.from_env())
                folder = cache.checkout(script, run_dir / "src")
        if script.source is not None:
            # a standalone script (or a function step): written beside the checkout's modules, if any
            folder = folder or run_dir / "src"
            target = folder / script.working_dir / (script.entry_point or "main.py")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(script.source)
        return folder

    # -- modes -------------------------------------------------------------------------------
    def _argv(self, record: TaskRecord, python: str, folder: Path | None) -> tuple[list[str], Path | None]:
        script = record.script
        workdir = folder / script.working_dir if folder is not None else None
        if script.command:
            return list(script.command), workdir
        if not script.entry_point:
            raise PrepareError("the task has neither an entry point nor a command")
        if workdir is None or not (workdir / script.entry_point).is_file():
            raise PrepareError(f"entry point not found: {script.entry_point} in {workdir or 'the task'}")
        return [python, "-u", script.entry_point, *args_flags(record.parameters)], workdir

    def _local(self, record: TaskRecord, run_dir: Path, code: Path | None) -> LaunchSpec:
        argv, workdir = self._argv(record, sys.executable, code)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # local mode: "python" means this worker's Python
        env = task_env(record, run_dir, pinning_env(_task_gpus(record)), self.s.redis_url)
        env["PYTHONPATH"] = tasklib.with_path(str(tasklib.link(run_dir, standalone=False)), env.get("PYTHONPATH"))
        return LaunchSpec(argv, workdir or run_dir, env)

    def _env(self, kind: str, record: TaskRecord, run_dir: Path, code: Path | None, reporter: Reporter) -> LaunchSpec:
        cuda = default_nvml.driver_version() if record.runtime.gpus else None  # part of the environment's key
        spec = EnvSpec.from_script(kind, record.script, cuda=cuda)
        cache = EnvCache(self.envs_root, reporter.system, max_envs=self.s.env_cache_size, installer=self.s.installer)
        holder = contextlib.ExitStack()
        built = holder.enter_context(cache.ensure_and_hold(spec))
        try:
            self._record_environment(
                record,
                {
                    "mode": kind,
                    "key": built.key,
                    "cached": built.cached,
                    "installer": built.installer,
                    "packages": built.packages,
                },
            )
            argv, workdir = self._argv(record, str(built.python), code)
            env = task_env(record, run_dir, pinning_env(_task_gpus(record)), self.s.redis_url)
            env["VIRTUAL_ENV" if kind == "venv" else "CONDA_PREFIX"] = str(built.path)
            env["PATH"] = f"{Path(built.python).parent}:{env.get('PATH', '')}"
            standalone = not any(r.lower().startswith("trainyard") for r in record.script.requirements)
            env["PYTHONPATH"] = tasklib.with_path(str(tasklib.link(run_dir, standalone)), env.get("PYTHONPATH"))
        except BaseException:
            holder.close()
            raise
        return LaunchSpec(argv, workdir or run_dir, env, release=[holder.close])

    def _docker(self, record: TaskRecord, run_dir: Path, code: Path | None, reporter: Reporter) -> LaunchSpec:
        image = record.container.image or self.s.docker_image
        if not image:
            raise PrepareError(
                "docker mode needs an image: set the task's docker image or start the worker with --docker IMAGE"
            )
        python = record.script.binary or "python"
        argv, _ = (
            self._argv(record, python, code)
            if code is not None or not record.script.command
            else (list(record.script.command), None)
        )
        setup = []
        if record.script.requirements:
            (run_dir / "requirements.txt").write_text("\n".join(record.script.requirements) + "\n")
            setup.append(f"{shlex.quote(python)} -m pip install -q -r {RUN_MOUNT}/requirements.txt")
        if record.container.setup_script:
            setup.append(record.container.setup_script)
        env = {
            **record.execution.env,
            **record.container.env,
            **pinning_env(_task_gpus(record)),
            "TRAINYARD_TASK_ID": record.id,
            "TRAINYARD_RUN_DIR": RUN_MOUNT,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": tasklib.CONTAINER_LIB,
            "PIP_CACHE_DIR": f"{CACHE_MOUNT}/pip",
            "UV_CACHE_DIR": f"{CACHE_MOUNT}/uv",
        }
        cache_dir = self.s.home / "cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        workdir = f"{CODE_MOUNT}/{record.script.working_dir}".rstrip("/.") if code is not None else RUN_MOUNT
        spec = DockerSpec(
            image=image,
            name=f"trainyard-{record.id}-{record.runtime.attempt}",
            argv=argv,
            env=env,
            code_dir=code,
            run_dir=run_dir,
            working_dir=workdir or CODE_MOUNT,
            setup_script="\n".join(setup) or None,
            gpus=_task_gpus(record),
            labels={LABEL_TASK: record.id, LABEL_WORKER: self.s.worker, LABEL_RUNS: str(run_dir.parent)},
            cache_dir=cache_dir,
            mounts=tasklib.mounts(standalone=True),
            network=self.s.docker_network,
            memory=record.execution.memory,
            cpus=record.execution.cpus,
            root_setup=bool(setup),
        )
        self._record_environment(record, {"mode": "docker", "image": image})
        return LaunchSpec(argv, run_dir, env, docker=spec)

    def _record_environment(self, record: TaskRecord, environment: dict) -> None:
        def apply(rec: TaskRecord) -> None:
            rec.runtime.environment = environment

        self.store.update(record.id, apply)


def _task_gpus(record: TaskRecord) -> list[int]:
    """The GPUs this task holds (given by its worker when it took the task)."""
    return [int(g) for g in record.runtime.gpus]
