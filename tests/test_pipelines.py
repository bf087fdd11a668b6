"""Pipelines from template tasks on real workers: references, typing, durability, caching, retry."""

from __future__ import annotations

import json
import signal

import psutil
import pytest
from pipelinekit import templates, wait_run
from workerproc import FAST, WorkerProcess, log_text, wait_for_log

from trainyard import InvalidInput, Pipeline, Queue, QueueNotFound, Task, TaskStatus
from trainyard.controller import run_store
from trainyard.controller.pipeline import resume


@pytest.fixture
def tpl(tmp_path):
    Queue.create("cpu")
    Queue.create("services")
    return templates(tmp_path / "templates")


def three_steps(tpl, **process_overrides) -> Pipeline:
    pipe = Pipeline("etl", project="pipes", default_queue="cpu")
    pipe.add_parameter("scale", 2.5)
    pipe.add_step("prep", base_task="tpl/prep", parameter_override={"Args/rows": 4})
    pipe.add_step(
        "process",
        base_task=tpl["process"],
        parameter_override={
            "Args/dataset": "${prep.artifacts.dataset.url}",
            "Args/scale": "${pipeline.scale}",
            **process_overrides,
        },
    )
    pipe.add_step(
        "train",
        base_task=tpl["train"].id,
        parameter_override={
            "Args/total": "${process.outputs.total}",
            "Args/epochs": 3,
            "Args/lr": 0.01,
            "Args/layers": [64, 32],
            "Args/note": "rows=${prep.outputs.rows}",
        },
    )
    return pipe


def test_three_step_pipeline_on_real_workers(tpl, conn, run_cli):
    pipe = three_steps(tpl)
    with WorkerProcess("-q", "services", "--services-mode", "2"), WorkerProcess("-q", "cpu", "--cpu-only"):
        run_id = pipe.start(queue="services")
        run = pipe.wait(timeout=180)
    assert run.status == "completed", (run.message, run.state)
    state = run.state
    prep, process, train = (Task.get(state[n].task_id) for n in ("prep", "process", "train"))
    dataset = prep.artifacts["dataset"]
    assert process.get_parameter("Args/dataset") == dataset.uri  # step 2 got step 1's artifact URL
    assert process.outputs == {"total": 15.0, "scale_type": "float"}  # 0+1+2+3 = 6, times 2.5, typed
    assert train.outputs["total"] == 15.0 and train.get_parameter("Args/note") == "rows=4"
    assert train.outputs["seen"] == {
        "Args/total": "float",
        "Args/epochs": "int",
        "Args/lr": "float",
        "Args/layers": "list",
        "Args/note": "str",
    }
    assert all(t.data.parent == run_id for t in (prep, process, train))
    shown = run_cli("pipeline", "show", run_id, check=True).stdout
    assert "[✓ prep completed]" in shown and "[✓ train completed ← prep, process]" in shown
    assert prep.id in shown
    listed = json.loads(run_cli("pipeline", "list", "--json", check=True).stdout)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["status"] == "completed"
    assert Task.get(run_id).status == TaskStatus.COMPLETED  # the controller task


def test_refused_before_anything_is_enqueued(tpl):
    before = {t.id for t in Task.list(limit=100)}

    cyclic = Pipeline("cyclic", default_queue="cpu")
    cyclic.add_step("a", base_task=tpl["prep"], parents=["c"])
    cyclic.add_step("b", base_task=tpl["prep"], parents=["a"])
    cyclic.add_step("c", base_task=tpl["prep"], parameter_override={"Args/rows": "${b.outputs.rows}"})
    with pytest.raises(InvalidInput, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        cyclic.start_locally()

    unknown_parent = Pipeline("p", default_queue="cpu").add_step("a", base_task=tpl["prep"], parents=["ghost"])
    with pytest.raises(InvalidInput, match="step 'a': unknown parent 'ghost'"):
        unknown_parent.start(queue="services")

    unknown_ref = Pipeline("p", default_queue="cpu")
    unknown_ref.add_step("a", base_task=tpl["process"], parameter_override={"Args/dataset": "${ghost.id}"})
    with pytest.raises(InvalidInput, match=r"\$\{ghost.id\} refers to an unknown step 'ghost'"):
        unknown_ref.start_locally()

    unknown_queue = Pipeline("p", default_queue="nowhere").add_step("a", base_task=tpl["prep"])
    with pytest.raises(QueueNotFound, match="no queue named 'nowhere'"):
        unknown_queue.start(queue="services")

    unknown_param = Pipeline("p", default_queue="cpu")
    unknown_param.add_step("a", base_task=tpl["prep"], parameter_override={"Args/rows": "${pipeline.nope}"})
    with pytest.raises(InvalidInput, match="unknown pipeline parameter 'nope'"):
        unknown_param.start_locally()
    assert {t.id for t in Task.list(limit=100)} == before  # no task, no controller, nothing queued
    assert run_store.list_runs(Queue("cpu").connection) == []
    assert len(Queue("cpu")) == 0 and len(Queue("services")) == 0


def test_reference_to_an_artifact_a_template_never_produces(tpl):
    """A template that has run once is checked: referencing an artifact it did not make is refused."""
    done = Pipeline("once", default_queue="cpu").add_step("prep", base_task=tpl["prep"])
    assert done.start_locally(run_steps_locally=True).status == "completed"
    ran = Task.get(done.run.state["prep"].task_id)
    bad = Pipeline("bad", default_queue="cpu")
    bad.add_step("prep", base_task=ran.id)
    bad.add_step(
        "process", base_task=tpl["process"], parameter_override={"Args/dataset": "${prep.artifacts.model.url}"}
    )
    with pytest.raises(InvalidInput, match="produces no artifact 'model' \\(it produced: dataset\\)"):
        bad.start_locally(run_steps_locally=True)


def test_cache_hits_for_unchanged_steps_and_force_rerun_bypasses(tpl):
    first = three_steps(tpl)
    for step in first.steps.values():
        step.cache = True
    run1 = first.start_locally(run_steps_locally=True)
    assert run1.status == "completed"
    assert {s.status for s in run1.state.values()} == {"completed"}

    second = three_steps(tpl)
    for step in second.steps.values():
        step.cache = True
    second.steps["train"].parameter_override["Args/lr"] = 0.02  # only train changes
    run2 = second.start_locally(run_steps_locally=True)
    assert run2.status == "completed"
    assert [run2.state[n].status for n in ("prep", "process", "train")] == ["cached", "cached", "completed"]
    assert run2.state["prep"].task_id == run1.state["prep"].task_id
    assert run2.state["train"].task_id != run1.state["train"].task_id

    third = three_steps(tpl)
    for step in third.steps.values():
        step.cache = True
    run3 = third.start_locally(run_steps_locally=True, force_rerun=True)
    assert {s.status for s in run3.state.values()} == {"completed"}
    assert run3.state["prep"].task_id not in (run1.state["prep"].task_id, run2.state["prep"].task_id)


def test_retry_reruns_only_the_failed_step_and_its_descendants(tpl, tmp_path, run_cli, monkeypatch):
    flag = tmp_path / "flag"
    monkeypatch.setenv("FAIL_UNLESS", str(flag))  # the in-process worker's tasks inherit it
    pipe = three_steps(tpl)
    pipe.abort_on_failure = False  # independent branches carry on
    pipe.add_step("side", base_task=tpl["prep"], parents=["prep"], parameter_override={"Args/rows": 1})
    run = pipe.start_locally(run_steps_locally=True)
    assert run.status == "failed"
    assert run.message.startswith("step 'process' failed: process: flag file missing")  # its last line
    assert [run.state[n].status for n in ("prep", "process", "train", "side")] == [
        "completed",
        "failed",
        "skipped",
        "completed",
    ]
    before = {n: s.task_id for n, s in run.state.items()}
    flag.touch()
    proc = run_cli("pipeline", "retry", run.id, env={"FAIL_UNLESS": str(flag)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run {run.id}: re-running process, train" in proc.stdout
    after = run_store.load(Queue("cpu").connection, run.id)
    assert after.status == "completed"
    assert after.state["prep"].task_id == before["prep"] and after.state["side"].task_id == before["side"]
    assert after.state["process"].task_id != before["process"]
    assert after.state["train"].status == "completed"


def test_controller_killed_mid_pipeline_resumes_without_rerunning(tpl, conn, tmp_path):
    go = tmp_path / "go"
    pipe = three_steps(tpl, **{"Args/wait-for": str(go)})
    with WorkerProcess("-q", "cpu", "--cpu-only"):
        victim = WorkerProcess("-q", "services", "--services-mode", "2", "--name", "services-1")
        run_id = pipe.start(queue="services")
        run = wait_run(conn, run_id, lambda r: r.state.get("process") and r.state["process"].task_id)
        wait_for_log(conn, run.state["process"].task_id, "process waiting")
        prep_task = run.state["prep"].task_id
        controller_pid = next(
            p.pid
            for p in psutil.Process(victim.proc.pid).children(recursive=True)
            if "trainyard.controller.run" in " ".join(p.cmdline())
        )
        victim.signal(signal.SIGKILL)
        victim.wait()
        psutil.wait_procs([psutil.Process(controller_pid)], timeout=30) if psutil.pid_exists(controller_pid) else None
        controller = Task.get(run_id).wait(timeout=60)  # reaped: failed, "worker lost"
        assert controller.status == TaskStatus.FAILED and "worker lost" in controller.data.runtime.error
        assert resume(conn, run_id) is None  # re-queued on services
        with WorkerProcess("-q", "services", "--services-mode", "2", "--name", "services-2", env=FAST):
            go.touch()
            final = pipe.wait(timeout=120)
    assert final.status == "completed", final.message
    assert final.state["prep"].task_id == prep_task  # finished steps are not re-run
    prep_runs = Task.list(tag="step:prep", limit=10)
    assert [t.id for t in prep_runs] == [prep_task]


def test_a_step_no_worker_serves_is_reported(tpl, conn):
    Queue.create("nobody-home")
    pipe = Pipeline("stuck", default_queue="nobody-home").add_step("prep", base_task=tpl["prep"])
    with WorkerProcess("-q", "services", "--services-mode", "2"):
        run_id = pipe.start(queue="services")
        run = wait_run(conn, run_id, lambda r: r.message and "no live worker serves queue 'nobody-home'" in r.message)
        assert run.state["prep"].message == "waiting: no live worker serves queue 'nobody-home'"
        pipe.stop()
        stopped = pipe.wait(timeout=60)
    assert stopped.status == "aborted"
    assert Task.get(stopped.state["prep"].task_id).status == TaskStatus.ABORTED


def test_services_worker_hosts_four_controllers_at_once(tpl, conn, tmp_path, run_cli):
    go = tmp_path / "go"
    pipes = []
    for i in range(4):
        pipe = Pipeline(f"p{i}", default_queue="cpu")
        pipe.add_step("prep", base_task=tpl["prep"])
        pipe.add_step(
            "process",
            base_task=tpl["process"],
            parameter_override={"Args/dataset": "${prep.artifacts.dataset.url}", "Args/wait-for": str(go)},
        )
        pipes.append(pipe)
    with (
        WorkerProcess("-q", "services", "--services-mode", "4", "--name", "svc"),
        WorkerProcess("-q", "cpu", "--cpu-only", "--name", "c1"),
        WorkerProcess("-q", "cpu", "--cpu-only", "--name", "c2"),
    ):
        ids = [p.start(queue="services") for p in pipes]
        for run_id in ids:  # every controller got as far as launching its second step
            wait_run(conn, run_id, lambda r: r.state.get("process") and r.state["process"].task_id)
        running = [t for t in Task.list(status="running", limit=50) if t.data.type.value == "controller"]
        assert sorted(t.id for t in running) == sorted(ids)
        assert {t.data.runtime.worker for t in running} == {"svc"}
        go.touch()
        finals = [p.wait(timeout=120) for p in pipes]
    assert [r.status for r in finals] == ["completed"] * 4
    assert "process got dataset=" in log_text(conn, finals[0].state["process"].task_id)


SEEN: list[str] = []


def skip_process(controller, name, step):
    SEEN.append(f"pre {name}")
    return name != "process"


def after(controller, name, step):
    SEEN.append(f"post {name} {controller.run.state[name].status}")


def test_callbacks_and_step_retries(tpl, tmp_path):
    flaky = tmp_path / "flaky.py"
    flaky.write_text(
        "import os, sys\n"
        f"flag = {str(tmp_path / 'flag')!r}\n"
        "if not os.path.exists(flag):\n"
        "    open(flag, 'w').close()\n"
        "    sys.exit('first attempt fails')\n"
        "print('second attempt works')\n"
    )
    flaky_task = Task.create("flaky", "tpl", script=flaky, detect_repository=False)
    pipe = Pipeline("callbacks", default_queue="cpu")
    pipe.add_step("prep", base_task=tpl["prep"], pre_callback=skip_process, post_callback=after)
    pipe.add_step("process", base_task=tpl["process"], parents=["prep"], pre_callback=skip_process)
    pipe.add_step("flaky", base_task=flaky_task, retries=1, post_callback=after)
    SEEN.clear()
    run = pipe.start_locally(run_steps_locally=True)
    assert run.status == "completed", run.message
    assert run.state["process"].status == "skipped" and "pre-execute callback" in run.state["process"].message
    assert run.state["flaky"].status == "completed" and run.state["flaky"].attempt == 2
    assert sorted(SEEN) == ["post flaky completed", "post prep completed", "pre prep", "pre process"]


def test_abort_from_the_cli_stops_running_steps(tpl, conn, tmp_path, run_cli):
    go = tmp_path / "never"
    pipe = three_steps(tpl, **{"Args/wait-for": str(go)})
    with WorkerProcess("-q", "services", "--services-mode", "2"), WorkerProcess("-q", "cpu", "--cpu-only"):
        run_id = pipe.start(queue="services")
        run = wait_run(conn, run_id, lambda r: r.state.get("process") and r.state["process"].task_id)
        wait_for_log(conn, run.state["process"].task_id, "process waiting")
        run_cli("pipeline", "abort", run_id, check=True)
        final = pipe.wait(timeout=120)
    assert final.status == "aborted"
    assert final.state["process"].status == "aborted" and final.state["train"].status == "skipped"
    assert Task.get(final.state["process"].task_id).status == TaskStatus.ABORTED


def _double(x: int) -> int:
    return 2 * x


def test_function_step_arguments_are_checked_when_added():
    pipe = Pipeline("args", default_queue="cpu")
    with pytest.raises(InvalidInput, match="argument 'x' is not JSON"):
        pipe.add_function_step("double", _double, kwargs={"x": object()})
    with pytest.raises(InvalidInput, match="argument name 'not valid' is not a Python identifier"):
        pipe.add_function_step("double", _double, kwargs={"not valid": 1})
    assert pipe.steps == {}


def test_a_crashed_controller_ends_its_run_and_abort_ends_a_run_without_one(tpl, conn, run_cli):
    """Issue 14, 2c: a controller whose pre_callback cannot be imported died and its run stayed
    "running" (retry refused, abort changed nothing); a run whose controller never ran stayed pending."""
    pipe = Pipeline("crashy", default_queue="cpu")
    pipe.add_step("prep", base_task=tpl["prep"], pre_callback="no_such_module_xyz:check")
    with WorkerProcess("-q", "services", "--services-mode", "1"):
        run_id = pipe.start(queue="services")
        controller = Task.get(run_id).wait(timeout=120)
    run = run_store.load(conn, run_id)
    reason = "controller error: ModuleNotFoundError: No module named 'no_such_module_xyz'"
    assert (run.status, run.message) == ("failed", reason)
    assert run.state["prep"].status == "skipped"
    assert (controller.status, controller.data.runtime.error) == (TaskStatus.FAILED, reason)

    idle = Pipeline("idle", default_queue="cpu")
    idle.add_step("prep", base_task=tpl["prep"])
    idle_id = idle.start(queue="services")  # no services worker: its controller stays queued
    said = run_cli("pipeline", "abort", idle_id, check=True).stdout
    assert said.strip() == f"run {idle_id}: aborted (aborted: the pipeline was stopped)"
    assert run_store.load(conn, idle_id).status == "aborted"
    assert Task.get(idle_id).status == TaskStatus.ABORTED


def test_a_steps_execution_options_reach_its_task(tpl):
    """Steps take Task.create's execution options (queues/options.py); they override only what they name."""
    pipe = Pipeline("opts", default_queue="cpu")
    pipe.add_step("prep", base_task=tpl["prep"], env={"STEP_ENV": "1"}, memory="1g", time_limit=600)
    assert pipe.start_locally(run_steps_locally=True).status == "completed"
    record = Task.get(pipe.run.state["prep"].task_id).data
    assert record.execution.env == {"STEP_ENV": "1"} and record.execution.memory == "1g"
    assert record.execution.time_limit == 600 and record.script.source == tpl["prep"].data.script.source
