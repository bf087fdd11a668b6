"""The examples run as written."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

from trainyard import Queue, Task, TaskStatus


def test_sweep_example_clones_and_enqueues():
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "sweep.py"), "--lrs", "0.5", "0.05"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    queued = Queue("sweep").tasks()
    assert [record.name for _, record in queued] == ["train lr=0.5", "train lr=0.05"]
    template = Task.get_task(project="examples", name="train-template")
    for _, record in queued:
        assert record.parent == template.id and record.status == TaskStatus.QUEUED
        assert record.script.entry_point == "train.py"
    assert [r.parameters["Args/lr"] for _, r in queued] == [0.5, 0.05]
