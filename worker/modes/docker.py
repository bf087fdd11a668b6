"""docker mode: the task runs in a container of its image (or the worker's ``--docker`` image)."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from ...runtime.task_api import ENV_RUN_DIR, ENV_TASK_ID
from .. import tasklib
from ..containers import (
    CACHE_MOUNT,
    CODE_MOUNT,
    LABEL_RUNS,
    LABEL_TASK,
    LABEL_WORKER,
    RUN_MOUNT,
    DockerLaunch,
    DockerSpec,
)
from ..gpus import pinning_env
from ..launch import LaunchSpec, PrepareError
from .base import Job, Launched


class DockerMode:
    name = "docker"

    def prepare(self, job: Job) -> LaunchSpec:
        record, s, code = job.record, job.settings, job.code
        image = record.container.image or s.docker_image
        if not image:
            raise PrepareError(
                "docker mode needs an image: set the task's docker image or start the worker with --docker IMAGE"
            )
        python = record.script.binary or "python"
        argv, _ = (
            job.argv(python) if code is not None or not record.script.command else (list(record.script.command), None)
        )
        setup = []
        if record.script.requirements:
            (job.run_dir / "requirements.txt").write_text("\n".join(record.script.requirements) + "\n")
            setup.append(f"{shlex.quote(python)} -m pip install -q -r {RUN_MOUNT}/requirements.txt")
        if record.container.setup_script:
            setup.append(record.container.setup_script)
        env = {
            **record.execution.env,
            **record.container.env,
            **pinning_env(job.gpus),
            ENV_TASK_ID: record.id,
            ENV_RUN_DIR: RUN_MOUNT,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": tasklib.CONTAINER_LIB,
            "PIP_CACHE_DIR": f"{CACHE_MOUNT}/pip",
            "UV_CACHE_DIR": f"{CACHE_MOUNT}/uv",
        }
        cache_dir = s.home / "cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        workdir = f"{CODE_MOUNT}/{record.script.working_dir}".rstrip("/.") if code is not None else RUN_MOUNT
        spec = DockerSpec(
            image=image,
            name=f"trainyard-{record.id}-{record.runtime.attempt}",
            argv=argv,
            env=env,
            code_dir=code,
            run_dir=job.run_dir,
            working_dir=workdir or CODE_MOUNT,
            setup_script="\n".join(setup) or None,
            gpus=job.gpus,
            labels={LABEL_TASK: record.id, LABEL_WORKER: s.worker, LABEL_RUNS: str(job.run_dir.parent)},
            cache_dir=cache_dir,
            mounts=tasklib.mounts(standalone=True),
            network=s.docker_network,
            memory=record.execution.memory,
            cpus=record.execution.cpus,
            root_setup=bool(setup),
        )
        job.record_environment({"mode": "docker", "image": image})
        return LaunchSpec(argv, job.run_dir, env, mode=self.name, docker=spec)

    def launch(self, spec: LaunchSpec, log: Callable[[str], None]) -> Launched:
        if spec.docker is None:
            raise PrepareError("docker mode: the launch spec has no container")
        return DockerLaunch(spec.docker, log)


MODE = DockerMode()
