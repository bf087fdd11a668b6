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


def _run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_pipeline_from_tasks_example_passes_artifact_urls():
    proc = _run_example("pipeline_from_tasks.py")
    assert "[✓ train completed ← process]" in proc.stdout
    process = Task.list(project="examples", name="process", tag="step:process")[0]
    dataset = Task.list(project="examples", name="dataset", tag="step:dataset")[0]
    assert process.get_parameter("Args/dataset") == dataset.artifacts["dataset"].uri
    train = Task.list(project="examples", name="train", tag="step:train")[0]
    assert train.get_parameter("Args/lr") == 0.3 and train.outputs["loss"] > 0


def test_pipeline_from_functions_example_passes_typed_returns():
    _run_example("pipeline_from_functions.py")
    stats = Task.list(project="examples", tag="step:stats")[0]
    assert stats.outputs == {"mean": 2.25, "peak": 3.5}
    report = Task.list(project="examples", tag="step:report")[0]
    assert report.outputs["line"] == "numbers: mean 2.25, peak 3.50"


def test_pipeline_decorators_example_fans_out_and_debugs_inline():
    proc = _run_example("pipeline_decorators.py", "--shards", "3")
    assert "grand total: 105" in proc.stdout
    assert len(Task.list(project="examples", tag="step:shard_sum_2")) == 1
    assert "grand total: 105" in _run_example("pipeline_decorators.py", "--debug", "--shards", "3").stdout


def test_hpo_example_runs_thirty_trials_and_prunes_the_bad_ones(conn):
    proc = _run_example("hpo.py")
    study_id = next(line.split()[1].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("study "))
    from trainyard.queues import studies

    trials = studies.trials(conn, study_id)
    states = [t["state"] for t in trials.values()]
    assert len(trials) == 30 and set(states) <= {"completed", "pruned"} and "pruned" in states
    assert f"study completed: {states.count('completed')} completed, {states.count('pruned')} pruned" in proc.stdout
    assert proc.stdout.count("(best so far)") >= 1 and "#1 hpo-base: lr=" in proc.stdout
    best = Task.get(studies.load(conn, study_id)["best"]["task"])
    assert best.status == TaskStatus.COMPLETED and best.outputs["final_loss"] < 1.0
