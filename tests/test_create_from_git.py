"""Task.create from a script in a real git checkout: commit, branch, entry point and diff."""

from __future__ import annotations

import subprocess

import pytest
from gitrepo import commit, git, make_repo

from trainyard import InvalidInput, Task


def test_commit_and_uncommitted_diff_apply_on_a_clean_clone(tmp_path):
    repo = tmp_path / "project"
    make_repo(repo, {"train/train.py": "print('v1')\n", "lib/util.py": "X = 1\n", "requirements.txt": "six\n"})
    head = commit(repo, {"lib/util.py": "X = 2\n"}, "second")
    # uncommitted: a tracked change, a staged change and a new untracked module
    (repo / "train/train.py").write_text("from helper import Y\nprint('v2', Y)\n")
    (repo / "lib/util.py").write_text("X = 3\n")
    git(repo, "add", "lib/util.py")
    (repo / "train/helper.py").write_text("Y = 'new file'\n")

    task = Task.create("train", "vision", script=repo / "train" / "train.py")
    script = Task.get(task.id).data.script
    assert script.commit == head
    assert script.branch == "main"
    assert script.repository == str(repo)
    assert (script.working_dir, script.entry_point) == ("train", "train.py")
    assert script.requirements == ["six"]
    assert script.diff

    clean = tmp_path / "clean"
    subprocess.run(["git", "clone", "-q", str(repo), str(clean)], check=True)
    git(clean, "checkout", "-q", script.commit)
    patch = tmp_path / "task.diff"
    patch.write_text(script.diff)
    git(clean, "apply", "--check", str(patch))
    git(clean, "apply", str(patch))
    for rel in ("train/train.py", "lib/util.py", "train/helper.py"):
        assert (clean / rel).read_text() == (repo / rel).read_text(), rel


def test_older_commit_can_be_recorded_explicitly(tmp_path):
    repo = tmp_path / "r"
    first = make_repo(repo, {"main.py": "print(1)\n"})
    commit(repo, {"main.py": "print(2)\n"}, "two")
    task = Task.create("old", script=repo / "main.py", commit=first)
    assert task.data.script.commit == first


def test_remote_credentials_are_not_recorded(tmp_path):
    repo = tmp_path / "r"
    make_repo(repo, {"main.py": "print(1)\n"})
    git(repo, "remote", "add", "origin", "https://alice:s3cr3t-token@git.example.invalid/team/r.git")
    task = Task.create("t", script=repo / "main.py")
    assert task.data.script.repository == "https://git.example.invalid/team/r.git"
    assert "s3cr3t" not in task.data.to_json().decode()


def test_standalone_script_carries_its_source(tmp_path):
    script = tmp_path / "solo.py"
    script.write_text("print('alone')\n")
    task = Task.create("solo", script=script)
    assert task.data.script.source == "print('alone')\n"
    assert task.data.script.repository is None and task.data.script.entry_point == "solo.py"


def test_missing_script_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(InvalidInput, match="script not found"):
        Task.create("t", script=tmp_path / "nope.py")
    assert Task.list() == []


def test_command_must_be_argv():
    with pytest.raises(InvalidInput, match="list of strings"):
        Task.create("t", command="python train.py --lr 1")
    with pytest.raises(InvalidInput, match="needs a script, a command or a source"):
        Task.create("t")
