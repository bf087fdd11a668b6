"""ClearML's examples/pipeline, ported with only their import lines changed, run on a real services
worker (the controller) and a real worker (the steps). The iris data ClearML downloads comes from a
local file: the copy that runs has the download URL replaced by that file's path (the only other
changed text; the ported file itself differs from ClearML's in its import lines only)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from clearml_ported import FILES_COMMUNITY_URL, IRIS_URL, copy_example, run_script, write_iris_pickle
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from workerproc import WorkerProcess, wait_status

from trainyard import Queue, Task, TaskStatus
from trainyard.clearml import Task as ClearmlTask
from trainyard.controller import run_store


def _queues() -> None:
    Queue.create("default", exist_ok=True)
    Queue.create("services", exist_ok=True)


def _iris_frame() -> pd.DataFrame:
    """What ClearML's step_one builds from the iris data (columns named as its code names them)."""
    iris = load_iris()
    frame = pd.DataFrame(iris["data"], columns=iris["feature_names"])
    frame.columns += ["target"]
    frame["target"] = iris["target"]
    return frame


def test_pipeline_from_functions_passes_dataframes_between_steps_through_safe_artifacts(tmp_path, conn):
    _queues()
    iris = write_iris_pickle(tmp_path / "iris_dataset.pkl")
    script = copy_example("pipeline/pipeline_from_functions.py", tmp_path, {IRIS_URL: str(iris)})
    local = run_script(script)
    assert local.returncode == 0, local.stderr
    assert "pipeline completed" not in local.stdout  # start() sent the controller to the services queue

    controller = Task.get_task(project="examples", name="Pipeline demo")
    assert controller.data.type.value == "controller" and controller.status == TaskStatus.QUEUED
    assert controller.get_parameters() == {"Args/url": str(iris)}
    # the model step returns a scikit-learn object: only pickle can carry it, and this run asks for it
    with (
        WorkerProcess("-q", "services", "--services-mode", "2"),
        WorkerProcess("-q", "default", env={"TRAINYARD_CLEARML_PICKLE": "1"}),
    ):
        done = wait_status(controller, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=240)
    assert done.status == TaskStatus.COMPLETED, "\n".join(
        line for t in Task.list(project="examples", status="failed") for line in t.get_log()
    )
    assert "pipeline completed" in done.get_log()
    run = run_store.load(conn, controller.id)
    assert {name: state.status for name, state in run.state.items()} == dict.fromkeys(
        ("step_one", "step_two", "step_three"), "completed"
    )

    steps = {name: ClearmlTask.get_task(task_id=state.task_id) for name, state in run.state.items()}
    frame = steps["step_one"].artifacts["data_frame"]
    assert frame.url.endswith(".parquet")
    pd.testing.assert_frame_equal(frame.get(), _iris_frame())
    x_train, x_test, y_train, y_test = steps["step_two"].artifacts["processed_data"].get()
    expected = train_test_split(
        _iris_frame().drop(columns="target"), _iris_frame()["target"], test_size=0.2, random_state=42
    )
    for got, want in zip((x_train, x_test, y_train, y_test), expected):
        pd.testing.assert_index_equal(got.index, want.index)
    model = steps["step_three"].artifacts["model"].get(allow_pickle=True)
    reference = LogisticRegression(solver="liblinear").fit(expected[0], expected[2])
    np.testing.assert_allclose(model.coef_, reference.coef_)
    assert model.score(x_test, y_test) == reference.score(expected[1], expected[3])


def test_pipeline_from_tasks_runs_the_three_template_steps_with_callbacks_on_the_services_worker(tmp_path, conn):
    _queues()
    iris = write_iris_pickle(tmp_path / "iris_dataset.pkl")
    for step in ("step1_dataset_artifact", "step2_data_processing", "step3_train_model"):
        # each registers itself as a template (execute_remotely() without a queue leaves a draft)
        proc = run_script(copy_example(f"pipeline/{step}.py", tmp_path, {IRIS_URL: str(iris)} if "1" in step else {}))
        assert proc.returncode == 0, proc.stderr
    step2 = Task.get_task(project="examples", name="Pipeline step 2 process dataset")
    assert step2.status == TaskStatus.DRAFT
    assert step2.get_parameters() == {
        "General/dataset_task_id": "",
        "General/dataset_url": "",
        "General/random_state": 42,
        "General/test_size": 0.2,
    }
    script = copy_example("pipeline/pipeline_from_tasks.py", tmp_path, {FILES_COMMUNITY_URL: str(iris)})
    local = run_script(script)
    assert local.returncode == 0, local.stderr
    controller = Task.get_task(project="examples", name="Pipeline demo")
    assert controller.status == TaskStatus.QUEUED and "done" not in local.stdout

    with WorkerProcess("-q", "services", "--services-mode", "2"), WorkerProcess("-q", "default"):
        done = wait_status(controller, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=240)
    assert done.status == TaskStatus.COMPLETED, "\n".join(
        line for t in Task.list(project="examples", status="failed") for line in t.get_log()
    )
    run = run_store.load(conn, controller.id)
    states = run.state
    assert {name: s.status for name, s in states.items()} == dict.fromkeys(
        ("stage_data", "stage_process", "stage_train"), "completed"
    )
    log = "\n".join(done.get_log())
    # the callbacks defined in the script ran in the controller on the services worker
    assert f"Cloning Task id={step2.id} with parameters: {{'General/dataset_url': " in log
    assert "'General/test_size': 0.25}" in log
    assert f"Completed Task id={states['stage_process'].task_id}" in log
    assert log.rstrip().endswith("done")  # as under ClearML, the script goes on after the pipeline

    process = ClearmlTask.get_task(task_id=states["stage_process"].task_id)
    assert (
        process.get_parameter("General/dataset_url")
        == ClearmlTask.get_task(task_id=states["stage_data"].task_id).artifacts["dataset"].url
    )
    x_train = process.artifacts["X_train"].get()
    data = load_iris()
    expected = train_test_split(data.data, data.target, test_size=0.25, random_state=42)
    np.testing.assert_array_equal(x_train, expected[0])
    assert process.artifacts["X_train"].url.endswith(".npy")
    train_log = "\n".join(Task.get(states["stage_train"].task_id).get_log())
    assert "Iris dataset loaded" in train_log and "model trained & stored" in train_log
    figure = ClearmlTask.get_task(task_id=states["stage_train"].task_id).artifacts["image-Iris_Types-plot"]
    assert figure.get().format == "PNG"  # step 3's plt.show() captured, as ClearML does


def test_pipeline_from_decorator_runs_locally_with_lazy_results_fetched_when_used(tmp_path, conn):
    iris = write_iris_pickle(tmp_path / "iris_dataset.pkl")
    script = copy_example("pipeline/pipeline_from_decorator.py", tmp_path, {IRIS_URL: str(iris)})
    # the model crosses from step_three to step_four and is printed by the pipeline logic: only
    # pickle carries a scikit-learn model, so this run asks for it
    proc = run_script(script, env={"TRAINYARD_CLEARML_PICKLE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr

    frame = _iris_frame()
    x_train, x_test, y_train, y_test = train_test_split(
        frame.drop(columns="target"), frame["target"], test_size=0.2, random_state=42
    )
    model = LogisticRegression(solver="liblinear").fit(x_train, y_train)
    accuracy = 100 * (model.predict(x_test) == y_test).mean()
    out = proc.stdout
    assert "pipeline args: " + str(iris) + " mock" in out
    assert "returned model: LogisticRegression(multi_class='auto', solver='liblinear')" in out
    assert f"Accuracy={accuracy}%" in out
    assert out.rstrip().endswith("process completed")

    controller = Task.get_task(project="examples", name="custom pipeline logic")
    assert controller.status == TaskStatus.COMPLETED and controller.get_parameters() == {
        "Args/pickle_url": str(iris),
        "Args/mock_parameter": "mock",
    }
    run = run_store.load(conn, controller.id)
    assert list(run.state) == ["step_one", "step_two", "step_three", "step_four"]
    assert all(state.status == "completed" for state in run.state.values())
    assert Task.get(run.state["step_four"].task_id).outputs == {"accuracy": accuracy / 100}


def test_callbacks_of_the_main_script_run_with_start_locally_and_steps_on_an_in_process_worker(tmp_path):
    script = tmp_path / "local_pipeline.py"
    script.write_text(
        textwrap.dedent(
            """
            from trainyard.clearml import PipelineController


            def double(x):
                return x * 2


            def before(pipeline, node, overrides):
                print("before", node.name, overrides)
                return node.name != "skipped"


            def after(pipeline, node):
                print("after", node.name, "ran as", node.executed)


            pipe = PipelineController(name="local", project="cb")
            pipe.add_parameter("x", 21)
            pipe.add_function_step(
                "first", double, function_kwargs={"x": "${pipeline.x}"}, function_return=["y"],
                pre_execute_callback=before, post_execute_callback=after,
            )
            pipe.add_function_step(
                "skipped", double, function_kwargs={"x": "${first.y}"}, function_return=["y"],
                pre_execute_callback=before,
            )
            pipe.start_locally(run_pipeline_steps_locally=True)
            print("successful:", pipe.is_successful())
            """
        )
    )
    proc = run_script(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = Task.list(project="cb", tag="step:first")[0]
    assert first.outputs == {"y": 42}
    lines = proc.stdout.splitlines()
    assert "before first {'kwargs/x': 21}" in lines and f"after first ran as {first.id}" in lines
    assert "before skipped {'kwargs_artifacts/x': '" + first.artifacts["y"].uri + "'}" in lines  # a reference
    assert Task.list(project="cb", tag="step:skipped") == [] and "successful: True" in lines
    assert Task.get_task(project="cb", name="local").status == TaskStatus.COMPLETED


def test_a_failed_pipeline_fails_its_controller_task_and_the_script_goes_on_as_under_clearml(tmp_path, conn):
    """ClearML's ``start()`` on the services agent: the pipeline runs to its end, ``stop()`` marks
    the controller task failed (a step failed) and ``start()`` returns; the script carries on to
    its end, and the task stays failed. trainyard: the same, with the pipeline's message."""
    _queues()
    script = tmp_path / "failing_pipeline.py"
    script.write_text(
        textwrap.dedent(
            """
            from trainyard.clearml import PipelineController


            def fine():
                return 1


            def broken(one):
                raise RuntimeError("broken on purpose")


            pipe = PipelineController(name="failing", project="fails")
            pipe.set_default_execution_queue("default")
            pipe.add_function_step("fine", fine, function_return=["one"])
            pipe.add_function_step("broken", broken, function_kwargs={"one": "${fine.one}"}, function_return=["two"])
            pipe.start()
            print("after start: successful", pipe.is_successful(), "finished", pipe.wait())
            """
        )
    )
    local = run_script(script)
    assert local.returncode == 0, local.stderr
    assert "after start" not in local.stdout  # the local run ended at start(), as ClearML's does
    controller = Task.get_task(project="fails", name="failing")
    with WorkerProcess("-q", "services", "--services-mode", "2"), WorkerProcess("-q", "default"):
        done = wait_status(controller, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=240)
    assert done.status == TaskStatus.FAILED
    assert done.data.runtime.exit_code == 0  # the script was not stopped: it ran to its end
    assert done.data.runtime.error.startswith("pipeline 'failing' failed")
    lines = done.get_log()
    marked = next(i for i, line in enumerate(lines) if line.startswith("Setting pipeline controller Task as failed"))
    assert "after start: successful False finished True" in lines[marked + 1 :]  # it went on after
    run = run_store.load(conn, controller.id)
    assert (run.state["fine"].status, run.state["broken"].status) == ("completed", "failed")
