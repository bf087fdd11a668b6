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


def test_demo_runs_two_queues_by_priority_and_shows_logs_and_metrics():
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = sorted(Task.list(project="demo", status="completed"), key=lambda t: t.data.started)
    assert [t.name for t in runs] == ["train lr=0.5", "train lr=0.05", "train lr=0.01", "train lr=0.1"]
    assert all(t.metrics["loss"]["train"].count == 4 and "model" in t.artifacts for t in runs)
    assert "epoch 3 loss" in proc.stdout and "metric loss/train" in proc.stdout


def test_train_script_runs_offline_without_a_worker():
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train.py"), "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "final loss" in proc.stdout
