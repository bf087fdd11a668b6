"""venv and conda modes end to end: a task from a real git repository, at an older commit with an
uncommitted diff, in a cached environment with a real package from the package index."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from gitrepo import commit, make_repo
from test_envs import standin_conda_exe
from workerproc import WorkerProcess, log_text

from trainyard import Queue, Task, TaskStatus

SCRIPT_V1 = textwrap.dedent(
    """
    import six
    from trainyard import current_task
    VERSION = "v1"
    print(f"code {VERSION} six {six.__version__}", flush=True)
    current_task().set_output("version", VERSION)
    """
)


@pytest.fixture
def repo(tmp_path):
    """A repository whose newest commit says v3; the task records the v1 commit plus a diff to v2."""
    path = tmp_path / "repo"
    first = make_repo(path, {"train.py": SCRIPT_V1, "requirements.txt": "six==1.16.0\n"})
    commit(path, {"train.py": SCRIPT_V1.replace('"v1"', '"v3"')}, "newest")
    return path, first


def _task(repo_path, commit_id, name: str, mode: str, diff: str | None = None) -> Task:
    task = Task.create(
        name,
        command=["python", "-u", "train.py"],
        repository=str(repo_path),
        commit=commit_id,
        requirements=["six==1.16.0"],
        mode=mode,
    )
    if diff is not None:
        task._record = task._store.update(task.id, lambda r: setattr(r.script, "diff", diff))
    return task


def _diff(repo_path, commit_id, version: str, tmp_path) -> str:
    """The uncommitted diff a user would have: the file at ``commit_id`` edited to say ``version``."""
    clone = tmp_path / f"edit-{version}"
    subprocess.run(["git", "clone", "-q", str(repo_path), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit_id], cwd=clone, check=True)
    (clone / "train.py").write_text(SCRIPT_V1.replace('"v1"', f'"{version}"'))
    return subprocess.run(
        ["git", "diff", "--binary", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout


def test_venv_mode_runs_old_commit_plus_diff_with_a_real_package(conn, repo, tmp_path):
    path, first = repo
    Queue.create("venv")
    task = _task(path, first, "old-plus-diff", "venv", diff=_diff(path, first, "v2", tmp_path))
    task.enqueue("venv")
    again = _task(path, first, "same-env", "venv")
    again.enqueue("venv")
    with WorkerProcess("-q", "venv", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=300) == 0
    record = Task.get(task.id).data
    text = log_text(conn, task.id)
    assert record.status == TaskStatus.COMPLETED, text
    assert "code v2 six 1.16.0" in text  # the older commit, with the diff applied, and the package
    assert record.outputs == {"version": "v2"}  # the in-task API works inside the venv (no trainyard there)
    assert "source: checked out" in text and "source: applied uncommitted changes (1 file)" in text
    assert "building venv" in text and record.runtime.environment["cached"] is False
    assert any(p.lower().startswith("six==1.16.0") for p in record.runtime.environment["packages"])
    second = Task.get(again.id).data
    second_text = log_text(conn, again.id)
    assert second.status == TaskStatus.COMPLETED and "code v1 six 1.16.0" in second_text
    assert "cache hit" in second_text and second.runtime.environment["cached"] is True
    assert second.runtime.environment["key"] == record.runtime.environment["key"]


def test_two_workers_building_the_same_environment_build_it_once(conn, repo):
    path, first = repo
    Queue.create("venv")
    tasks = [_task(path, first, f"twin-{i}", "venv") for i in range(2)]
    for task in tasks:
        task.enqueue("venv")
    workers = [WorkerProcess("-q", "venv", "--cpu-only", "--burst", "--installer", "pip") for _ in range(2)]
    try:
        for worker in workers:
            assert worker.wait(timeout=300) == 0
    finally:
        for worker in workers:
            worker.stop()
    records = [Task.get(t.id).data for t in tasks]
    assert all(r.status == TaskStatus.COMPLETED for r in records)
    assert len({r.runtime.worker for r in records}) == 2, "each worker should have taken one task"
    logs = [log_text(conn, t.id) for t in tasks]
    assert sum("building venv" in text for text in logs) == 1
    assert sum("cache hit" in text for text in logs) == 1


def test_bad_requirement_and_bad_source_fail_with_the_reason(conn, repo, tmp_path):
    path, first = repo
    newest = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True).stdout.strip()
    Queue.create("venv")
    bad_req = _task(path, first, "bad-req", "venv")
    bad_req.edit(requirements=["this-package-does-not-exist-trainyard==1.0"])
    bad_diff = _task(path, newest, "bad-diff", "venv", diff=_diff(path, first, "v2", tmp_path))  # made for v1
    missing = _task(path, "0" * 40, "missing-commit", "venv")
    for task in (bad_req, bad_diff, missing):
        task.enqueue("venv")
    ok = _task(path, first, "fine", "local")
    ok.enqueue("venv")
    with WorkerProcess("-q", "venv", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=300) == 0
    errors = {t.name: Task.get(t.id).data for t in (bad_req, bad_diff, missing)}
    assert all(r.status == TaskStatus.FAILED for r in errors.values())
    assert "this-package-does-not-exist-trainyard" in errors["bad-req"].runtime.error
    assert "uncommitted diff no longer applies" in errors["bad-diff"].runtime.error
    assert "does not exist in" in errors["missing-commit"].runtime.error
    assert Task.get(ok.id).status == TaskStatus.COMPLETED  # local mode, checked out, the worker carried on


def test_conda_mode_with_the_stand_in_and_without_conda(conn, repo, tmp_path):
    """conda cannot be installed here: tests/standin_conda.py stands in for it (same command line)."""
    path, first = repo
    Queue.create("conda")
    task = _task(path, first, "conda-task", "conda")
    task.edit(conda_packages=["numpy"])
    task.enqueue("conda")
    exe = standin_conda_exe(tmp_path / "bin")
    with WorkerProcess("-q", "conda", "--cpu-only", "--burst", env={"TRAINYARD_CONDA_EXE": str(exe)}) as worker:
        assert worker.wait(timeout=300) == 0
    record = Task.get(task.id).data
    assert record.status == TaskStatus.COMPLETED, log_text(conn, task.id)
    assert "code v1 six 1.16.0" in log_text(conn, task.id)
    assert record.runtime.environment["mode"] == "conda"

    no_conda = _task(path, first, "no-conda", "conda")
    no_conda.enqueue("conda")
    env = {"TRAINYARD_CONDA_EXE": "", "PATH": "/usr/bin:/bin"}
    with WorkerProcess("-q", "conda", "--cpu-only", "--burst", env=env) as worker:
        assert worker.wait(timeout=120) == 0
    failed = Task.get(no_conda.id).data
    assert failed.status == TaskStatus.FAILED
    assert "conda mode needs conda, mamba or micromamba" in failed.runtime.error
