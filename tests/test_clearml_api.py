"""trainyard.clearml: ClearML's Task, Logger, StorageManager and artifacts over trainyard's own API."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from workerproc import WorkerProcess, wait_status

import trainyard.clearml.task as clearml_task
from trainyard import Queue, TaskStatus
from trainyard import Task as NativeTask
from trainyard.clearml import StorageManager, Task, UnsupportedCall
from trainyard.clearml import artifacts as codec
from trainyard.queues.backend import streams
from trainyard.worker.runfolder import create_run_folder


@pytest.fixture
def in_task(tmp_path, monkeypatch):
    """This process as a task run by a worker: a run folder with the given parameters."""

    def make(parameters: dict, configuration: dict | None = None):
        run = create_run_folder(
            tmp_path / "run",
            {"id": "t1", "name": "n", "project": "p", "parameters": parameters, "configuration": configuration or {}},
        )
        monkeypatch.setenv("TRAINYARD_RUN_DIR", str(run))
        monkeypatch.setenv("TRAINYARD_TASK_ID", "t1")
        monkeypatch.setattr(clearml_task, "_current", None)
        return run

    return make


def _events(run) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def test_connect_updates_dicts_namespaces_and_objects_in_place_with_the_defaults_types(in_task):
    run = in_task(
        {
            "General/lr": "0.5",
            "General/epochs": "3",
            "General/amp": "true",
            "General/layers": "[1, 2]",
            "General/tag": 7,
            "General/none": "",
            "Args/batch": 64,
            "model/depth": 5,
        }
    )
    task = Task.init("p", "n")
    config = {"lr": 0.1, "epochs": 1, "amp": False, "layers": [4], "tag": "x", "none": None, "new": 5}
    assert task.connect(config) is config
    assert config == {"lr": 0.5, "epochs": 3, "amp": True, "layers": [1, 2], "tag": "7", "none": None, "new": 5}
    assert type(config["lr"]) is float and type(config["epochs"]) is int

    namespace = argparse.Namespace(batch=32, seed=1)
    assert task.connect(namespace) is namespace
    assert (namespace.batch, namespace.seed) == (64, 1)

    class Model:
        depth = 2

        def __init__(self):
            self.depth = 2
            self.width = 8

    model = Model()
    task.connect(model, name="model")
    assert (model.depth, model.width) == (5, 8)

    recorded = {k: v for e in _events(run) if e["kind"] == "parameters" for k, v in e["values"].items()}
    assert recorded == {"General/new": 5, "Args/seed": 1, "model/width": 8}
    assert task.get_parameters()["General/lr"] == "0.5" and task.get_parameter("Args/batch") == "64"
    assert task.get_parameters(cast=True)["Args/batch"] == 64


def test_argparse_results_are_connected_under_args_with_the_tasks_values(in_task):
    in_task({"Args/lr": 0.25, "Args/name": "from-task"})
    Task.init("p", "n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--name", default="x")
    args = parser.parse_args(["--name", "from-command-line"])
    assert (args.lr, args.name) == (0.25, "from-task")  # ClearML: the task's values win remotely


def test_a_value_that_does_not_cast_to_the_default_is_one_clear_error(in_task):
    in_task({"General/epochs": "0.25"})
    task = Task.init("p", "n")
    with pytest.raises(ValueError, match=r"parameter General/epochs: the task's value '0.25' is not a int"):
        task.connect({"epochs": 10})


def test_connect_configuration_refills_a_dict_and_gives_a_file_for_text(in_task, tmp_path):
    in_task({}, {"General": {"a": 2, "b": [1]}, "text": "key: value\n"})
    task = Task.init("p", "n")
    config = {"a": 1, "old": True}
    assert task.connect_configuration(config) is config and config == {"a": 2, "b": [1]}
    local = tmp_path / "c.yaml"
    local.write_text("key: local\n")
    path = task.connect_configuration(local, name="text")
    assert Path(path).read_text() == "key: value\n"


def test_artifacts_round_trip_in_safe_formats(tmp_path):
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]}, index=[10, 20])
    series = pd.Series([1, 2, 3], name="target", index=[5, 6, 7])
    values = {
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "frame": frame,
        "series": series,
        "dict": {"a": [1, 2], "b": None},
        "text": "not a path",
        "seq": (frame, series, np.array([1, 2])),
    }
    for name, value in values.items():
        path = codec.write(value, tmp_path, name)
        back = codec.read(path)
        if name == "seq":
            assert isinstance(back, tuple) and len(back) == 3
            pd.testing.assert_frame_equal(back[0], frame)
            pd.testing.assert_series_equal(back[1], series)
            np.testing.assert_array_equal(back[2], [1, 2])
        elif name == "array":
            np.testing.assert_array_equal(back, value) and back.dtype == np.float32
        elif name == "frame":
            pd.testing.assert_frame_equal(back, frame)
        elif name == "series":
            pd.testing.assert_series_equal(back, series)
        else:
            assert back == value
    image = Image.new("RGB", (4, 3), (255, 0, 0))
    assert codec.read(codec.write(image, tmp_path, "img")).getpixel((1, 1)) == (255, 0, 0)
    assert codec.write(np.array([1, 2]), tmp_path, "n").read_bytes()[:6] == b"\x93NUMPY"  # npy, no pickle


def test_objects_only_pickle_can_carry_are_refused_unless_asked_for(tmp_path, monkeypatch):
    class Model:
        pass

    with pytest.raises(
        UnsupportedCall, match=r"artifact 'model': a test_clearml_api.Model can only be stored with pickle"
    ):
        codec.write(Model(), tmp_path, "model")
    with pytest.raises(UnsupportedCall, match="can only be stored with pickle"):
        codec.write(np.array([Model()], dtype=object), tmp_path, "objects")
    path = codec.write({1, 2}, tmp_path, "a_set", auto_pickle=True)
    assert path.name == "a_set.pkl"
    with pytest.raises(UnsupportedCall, match=r"a_set.pkl is a pickle: it is not loaded unless asked for"):
        codec.read(path)
    assert codec.read(path, allow_pickle=True) == {1, 2}
    monkeypatch.setenv("TRAINYARD_CLEARML_PICKLE", "1")
    assert codec.read(path) == {1, 2}


def test_storage_manager_reads_local_paths_and_fsspec_urls(tmp_path):
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    assert StorageManager.get_local_copy(str(source)) == str(source)
    assert StorageManager.get_local_copy(f"file://{source}") == str(source)
    assert StorageManager.upload_file(str(source), "memory://bucket/data.csv") == "memory://bucket/data.csv"
    copy = StorageManager.get_local_copy("memory://bucket/data.csv")
    assert Path(copy).read_text() == "a,b\n1,2\n" and copy != str(source)
    assert StorageManager.exists_file("memory://bucket/data.csv")
    with pytest.raises(UnsupportedCall, match="does not support clearml StorageManager.download_folder"):
        StorageManager.download_folder("s3://x")


def test_calls_outside_the_supported_surface_name_the_call():
    with pytest.raises(UnsupportedCall, match=r"^trainyard.clearml does not support clearml Dataset \("):
        from trainyard.clearml import Dataset  # noqa: F401
    with pytest.raises(UnsupportedCall, match="clearml Task.create_function_task"):
        _ = Task.create_function_task
    with pytest.raises(UnsupportedCall, match=r"clearml Task.init\(deferred_upload=...\)"):
        Task.init("p", "n", deferred_upload=True)
    assert not hasattr(Task, "_repr_html_")  # Python's own probes still see AttributeError


def test_the_refused_pipeline_arguments_are_one_table_of_real_clearml_parameters():
    """Each entry of the refusal table is a parameter of the call it names, and is refused in one
    line before anything is written (no controller task for a refused PipelineController)."""
    import inspect

    from trainyard.clearml.automation import PipelineController, PipelineDecorator
    from trainyard.clearml.automation.controller import REFUSED

    owners = {"PipelineController": PipelineController, "PipelineDecorator": PipelineDecorator}
    for call, names in REFUSED.items():
        owner, _, method = call.partition(".")
        function = inspect.getattr_static(owners[owner], method or "__init__")
        function = getattr(function, "__func__", function)
        assert set(names) <= set(inspect.signature(function).parameters), call
    with pytest.raises(UnsupportedCall, match=r"clearml PipelineController\(docker, repo=...\) \(see README"):
        PipelineController(name="refused", project="refused", docker="img", repo="git@x")
    with pytest.raises(UnsupportedCall, match=r"PipelineDecorator.component\(retry_on_failure=<callable>\)"):
        PipelineDecorator.component(retry_on_failure=lambda *a: True)
    assert Task.get_tasks(project_name="refused") == []


def test_a_script_calling_an_unsupported_call_gets_one_line(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("from trainyard.clearml import Task\nTask.query_tasks(project_name='x')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: trainyard.clearml does not support clearml Task.query_tasks "
        "(see README: Coming from ClearML, for what is carried)"
    ]


def test_a_script_registers_itself_reports_and_runs_remotely_after_execute_remotely(tmp_path, conn):
    Queue.create("cpu", exist_ok=True)
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import matplotlib.pyplot as plt
            import numpy as np
            from trainyard.clearml import Logger, Task

            task = Task.init(project_name="demo", task_name="train")
            args = {"epochs": 2, "lr": 0.1}
            task.connect(args)
            task.connect_configuration({"layers": [4, 8]}, name="model")
            task.execute_remotely(queue_name="cpu")
            logger = Logger.current_logger()
            for epoch in range(args["epochs"]):
                logger.report_scalar("loss", "train", 1.0 / (epoch + 1) * args["lr"], iteration=epoch)
            logger.report_single_value("accuracy", 0.9)
            logger.report_table("results", "epochs", table_plot=[["epoch", "loss"], [0, 1.0]])
            logger.report_image("sample", "red", matrix=np.zeros((4, 4, 3), dtype=np.uint8))
            plt.plot([1, 2, 3])
            logger.report_matplotlib_figure("curve", "line", plt.gcf())
            task.upload_artifact("weights", np.ones(3))
            print("trained with", args)
            """
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "trained with" not in proc.stdout  # execute_remotely stopped the local run
    native = NativeTask.get_task(project="demo", name="train")
    assert native.status == TaskStatus.QUEUED and native.data.execution.queue == "cpu"
    assert native.get_parameters() == {"General/epochs": 2, "General/lr": 0.1}
    assert native.data.configuration == {"model": {"layers": [4, 8]}}

    native.refresh()
    clone = Task.clone(native.id, name="train lr=0.5")
    clone.set_parameters({**clone.get_parameters(), "General/lr": "0.5"})  # ClearML code writes strings
    assert NativeTask.get(clone.id).get_parameters() == {"General/epochs": 2, "General/lr": 0.5}
    Task.enqueue(clone, queue_name="cpu")

    worker = WorkerProcess("--queue", "cpu", "--burst")
    try:
        for task_id, lr in ((native.id, 0.1), (clone.id, 0.5)):
            done = wait_status(NativeTask.get(task_id), TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120)
            assert done.status == TaskStatus.COMPLETED, done.data.runtime.error
            view = Task.get_task(task_id=task_id)
            assert view.status == "completed"
            assert f"trained with {{'epochs': 2, 'lr': {lr}}}" in view.get_reported_console_output()[0]
            scalars = view.get_last_scalar_metrics()
            assert scalars["loss"]["train"] == {"last": lr / 2, "min": lr / 2, "max": lr}
            assert scalars["Summary"]["accuracy"]["last"] == 0.9
            arts = view.artifacts
            assert {"table-results-epochs", "image-sample-red", "image-curve-line", "weights"} <= set(arts)
            np.testing.assert_array_equal(arts["weights"].get(), np.ones(3))
            assert arts["image-curve-line"].get().format == "PNG"
    finally:
        worker.stop()
    found = Task.get_tasks(project_name="demo", task_name=r"lr=0\.\d", task_filter={"status": ["completed"]})
    assert [t.name for t in found] == ["train lr=0.5"]


def test_task_init_reuses_the_last_task_of_this_script_when_it_kept_nothing_as_clearml_does(tmp_path, conn):
    """``reuse_last_task_id=True`` (the default): the second run of a script reuses its last task
    (reset: metrics, log and parameters from the first run gone) unless that task kept artifacts;
    ``False`` always makes a new one; ``"<id>"`` names the task to reuse."""
    script = tmp_path / "debug.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from trainyard.clearml import Task

            reuse = {"default": True, "no": False}.get(sys.argv[1], sys.argv[1])
            task = Task.init(project_name="dev", task_name="debug", reuse_last_task_id=reuse)
            task.connect({"run": sys.argv[2]})
            task.get_logger().report_scalar("loss", "train", float(sys.argv[2]), iteration=0)
            if sys.argv[3:] == ["keep"]:
                task.upload_artifact("result", {"run": sys.argv[2]})
            print("run", sys.argv[2], "as", task.id)
            """
        )
    )

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()[-1]

    first = run("default", "1")
    second = run("default", "2")
    assert second == first  # nothing kept: reused
    task = NativeTask.get(first)
    assert task.status == TaskStatus.COMPLETED and task.get_parameters() == {"General/run": "2"}
    assert [p["value"] for p in streams.metric_points(conn, first)] == [
        2.0
    ]  # the first run's points went with the reset
    assert not any("run 1" in line for line in task.get_log())
    third = run("no", "3")
    assert third != first  # reuse_last_task_id=False: a new task
    fourth = run("default", "4", "keep")
    assert fourth == third  # the last task (the third run's) is reused; this run keeps an artifact
    fifth = run("default", "5")
    assert fifth != fourth and "result" in NativeTask.get(fourth).data.artifacts  # results are never reset
    assert run(first, "6") == first  # a named task
    assert run(fourth, "7") not in (first, fourth)  # a named task with results: a new one
    assert len(NativeTask.list(project="dev")) == 4


@pytest.mark.parametrize("imported", ["before Task.init", "after Task.init"])
def test_plt_show_stores_the_open_figures_as_png_artifacts_once_task_init_ran(tmp_path, conn, imported):
    """ClearML captures matplotlib figures on ``plt.show()``; so does Task.init here, whether pyplot
    was imported before it or is imported after (then it is patched on import)."""
    pyplot = "import matplotlib.pyplot as plt"
    script = tmp_path / "figures.py"
    script.write_text(
        textwrap.dedent(
            f"""
            {pyplot if imported.startswith("before") else ""}
            from trainyard.clearml import Task

            Task.init(project_name="figures", task_name="{imported}")
            {pyplot if imported.startswith("after") else ""}
            plt.plot([1, 2, 3])
            plt.title("loss curve")
            plt.figure()
            plt.bar([0, 1], [3, 4])
            plt.show()
            plt.show()  # the same figures again: the next iteration of each
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr
    view = Task.get_task(project_name="figures", task_name=imported)
    arts = view.artifacts
    assert {"image-loss_curve-plot", "image-Figure_2-plot"} <= set(arts)
    assert arts["image-loss_curve-plot"].get().format == "PNG"
    assert arts["image-loss_curve-plot"].metadata["iteration"] == 1  # shown twice: iterations 0 and 1
    assert arts["image-Figure_2-plot"].metadata["title"] == "Figure 2"


def test_a_function_step_returning_what_only_pickle_can_carry_stops_with_one_line(in_task, capsys):
    from trainyard.clearml.steps import run_step
    from trainyard.runtime.task_api import current_task

    class Model:
        pass

    def train(rows):
        return Model()

    in_task({"kwargs/rows": 3})
    with pytest.raises(SystemExit) as stopped:
        run_step(current_task(), train, "kwargs", ["model"])
    assert str(stopped.value).startswith(
        "trainyard: step function train(): artifact 'model': a test_clearml_api.Model can only be stored with pickle"
    )
