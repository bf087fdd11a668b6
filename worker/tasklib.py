"""The in-task runtime on a task's path: one folder, the same in every mode.

Every task gets ``PYTHONPATH`` starting with a folder holding the runtime (``trainyard/runtime``) as
``trainyard_runtime`` — what function-step scripts and the pipeline-file job runner
(``python -m trainyard_runtime.jobrun``) import — and, in an environment without trainyard (a venv
or conda environment not asking for it, any container), the stand-in ``trainyard`` package whose
only content is ``current_task``. On the host the folder is ``<run>/lib`` with links to the files
trainyard itself runs from (nothing is copied or generated); in a container the same entries are
mounted read-only under ``/trainyard/lib``.
"""

from __future__ import annotations

from pathlib import Path

from .. import runtime

RUNTIME_NAME = "trainyard_runtime"
CONTAINER_LIB = "/trainyard/lib"


def entries(standalone: bool) -> dict[str, Path]:
    """Name on the task's path -> folder it stands for; ``standalone``: the environment has no trainyard."""
    folder = Path(runtime.__file__).resolve().parent
    found = {RUNTIME_NAME: folder}
    if standalone:
        found["trainyard"] = folder / "standin"  # never imported here: it imports trainyard_runtime
    return found


def link(run_dir: Path, standalone: bool) -> Path:
    """``<run>/lib`` with a link per entry; returns the folder to put first on ``PYTHONPATH``."""
    lib = run_dir / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for name, target in entries(standalone).items():
        (lib / name).symlink_to(target, target_is_directory=True)
    return lib


def mounts(standalone: bool) -> dict[str, str]:
    """Host folder -> read-only mount point in a container (under ``CONTAINER_LIB``)."""
    return {str(target): f"{CONTAINER_LIB}/{name}" for name, target in entries(standalone).items()}


def with_path(first: str, rest: str | None) -> str:
    """``PYTHONPATH`` with ``first`` in front of what was there."""
    return f"{first}:{rest}" if rest else first
