"""ClearML's examples/automation (programmatic_orchestration with toy_base_task), ported with only
the import line changed (`from clearml import Task` -> `from trainyard.clearml import Task`), run
as scripts and on a real worker; the results are ClearML's: the clone prints `Example_Param is 3`."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from clearml_ported import copy_example, run_script
from workerproc import WorkerProcess, wait_for_log, wait_status

from trainyard import InvalidInput, Queue, Task, TaskStatus
from trainyard.clearml import Task as ClearmlTask
from trainyard.clearml import UnsupportedCall
from trainyard.clearml.automation import TaskScheduler, TriggerScheduler
from trainyard.clearml.automation.scheduler import to_cron
from trainyard.controller import schedules
from trainyard.controller.triggers import FIRES, TriggerService, fires
from trainyard.queues import studies
from trainyard.queues.backend import streams


def await_fires(conn, count: int, trigger: str, timeout: float = 120, key: str = "trigger") -> list[dict]:
    """Block on the firings stream until ``count`` firings of ``trigger`` (whose ``key`` field is
    ``trigger``: its id, or ``name`` for a function schedule) are recorded."""
    deadline, cursor, found = time.monotonic() + timeout, "0-0", []
    while len(found) < count and time.monotonic() < deadline:
        for _, entries in conn.xread({FIRES: cursor}, block=1000, count=100) or []:
            for entry_id, fields in entries:
                cursor = entry_id
                found += [data for data in [json.loads(fields[b"data"])] if data.get(key) == trigger]
    assert len(found) >= count, f"only {len(found)} firings of {trigger} before the timeout"
    return found


def test_programmatic_orchestration_clones_edits_and_enqueues_the_toy_task(tmp_path):
    Queue.create("default", exist_ok=True)
    toy = run_script(copy_example("automation/toy_base_task.py", tmp_path))
    assert toy.returncode == 0, toy.stderr
    assert "Example_Param is 1" in toy.stdout

    base = Task.get_task(project="examples", name="Toy Base Task")
    assert base.status == TaskStatus.COMPLETED  # it ran here, reported as it went
    assert base.get_parameters() == {"General/Example_Param": 1}  # typed, where ClearML keeps "1"
    assert "Example_Param is 1" in base.get_log()
    assert base.data.script.source and base.data.script.entry_point == "toy_base_task.py"

    controller = run_script(copy_example("automation/programmatic_orchestration.py", tmp_path))
    assert controller.returncode == 0, controller.stderr
    assert "Enqueue next step in pipeline to queue: default" in controller.stdout
    ctl = Task.get_task(project="examples", name="Simple Controller Task")
    assert ctl.status == TaskStatus.COMPLETED and ctl.data.type.value == "controller"
    assert "Done processing :)" in ctl.get_log()

    clone = Task.get_task(project="examples", name="Auto generated cloned task")
    assert clone.parent == base.id and clone.status == TaskStatus.QUEUED
    assert clone.get_parameters() == {"General/Example_Param": 3}

    worker = WorkerProcess("--queue", "default", "--burst")
    try:
        done = wait_status(clone, TaskStatus.COMPLETED, TaskStatus.FAILED, timeout=120)
        assert done.status == TaskStatus.COMPLETED, done.data.runtime.error
        assert "Example_Param is 3" in done.get_log()
    finally:
        worker.stop()


@pytest.mark.parametrize(
    "fields, cron",
    [  # ClearML's own examples of TaskScheduler.add_task (examples/scheduler/cron_example.py)
        ({"minute": 30, "hour": 10, "day": 1}, "30 10 * * *"),  # every day at 10:30
        ({"minute": 15}, "*/15 * * * *"),  # every 15 minutes
        ({"hour": 1}, "0 * * * *"),  # every hour
        ({"hour": 1, "minute": 30}, "30 * * * *"),  # every hour at :30
        ({"minute": 30, "hour": 22, "day": 1}, "30 22 * * *"),  # every day at 22:30
        ({"minute": 30, "hour": 7, "day": 2}, "30 7 */2 * *"),  # every other day at 7:30
        ({"minute": 30, "hour": 8, "day": 0, "weekdays": ["saturday"]}, "30 8 * * 6"),  # Saturdays 8:30
        ({"hour": 2, "weekdays": ["saturday", "sunday"]}, "0 */2 * * 0,6"),  # every 2 hours on weekends
        ({"month": 1, "day": 5}, "0 0 5 * *"),  # the 5th of each month
        ({"year": 1, "month": 3, "day": 4}, "0 0 4 3 *"),  # March 4th of each year
        (
            {"minute": 30, "hour": 2, "weekdays": ["monday", "tuesday", "wednesday", "thursday", "friday"]},
            "30 */2 * * 1,2,3,4,5",
        ),
    ],
)
def test_task_scheduler_fields_mean_what_clearml_means(fields, cron):
    assert to_cron(**fields) == cron


def test_task_scheduler_stores_the_schedule_and_the_trigger_service_fires_it(conn):
    Queue.create("default", exist_ok=True)
    template = Task.create("nightly", "examples", command=["true"])
    scheduler = TaskScheduler()
    scheduler.add_task(
        name="every 15 min", schedule_task_id=ClearmlTask.get_task(task_id=template.id), queue="default", minute=15
    )
    [schedule] = scheduler.get_scheduled_tasks()
    assert (schedule.cron, schedule.task_id, schedule.queue) == ("*/15 * * * *", template.id, "default")
    service = TriggerService(conn)
    start = 1_800_000_000.0  # 15-minute aligned
    service.fire_due([], start - 1)
    service.fire_due([], start + 1)
    [clone] = Queue("default").tasks()
    assert clone[1].parent == template.id
    with pytest.raises(InvalidInput, match=r"add_task\(schedule_function=...\) needs a name \(as in ClearML\)"):
        scheduler.add_task(schedule_function=print, minute=30, hour=2)
    with pytest.raises(InvalidInput, match="unknown weekday 'caturday'"):
        scheduler.add_task(schedule_task_id=template.id, queue="default", hour=2, weekdays=["caturday"])


def test_the_optimiser_and_its_ranges_are_trainyards_own():
    from trainyard.clearml.automation import HyperParameterOptimizer, UniformParameterRange
    from trainyard.clearml.automation.optuna import OptimizerOptuna
    from trainyard.controller import hpo

    assert issubclass(HyperParameterOptimizer, hpo.HyperParameterOptimizer)
    assert UniformParameterRange is hpo.UniformParameterRange and OptimizerOptuna is hpo.OptimizerOptuna


def test_trigger_scheduler_fires_on_the_status_event_once_per_task_with_a_threshold_of_zero(conn):
    Queue.create("default", exist_ok=True)
    Queue.create("cpu", exist_ok=True)
    template = Task.create("retrain", "examples", command=["true"])
    TriggerScheduler().add_task_trigger(
        name="high score",
        schedule_task_id=template.id,
        schedule_queue="default",
        trigger_project="examples",
        trigger_on_metric="epoch_accuracy",
        trigger_on_variant="epoch_accuracy",
        trigger_on_sign="max",
        trigger_on_threshold=0.0,  # ClearML ignores a threshold of 0 (`and self.threshold`); here it counts
        trigger_on_status=["completed"],
    )
    report = "from trainyard import current_task; current_task().log_metric('epoch_accuracy', 'epoch_accuracy', {})"
    watched = {
        "at zero": Task.create("at zero", "examples", command=[sys.executable, "-c", report.format(0.0)]),
        "below": Task.create("below", "examples", command=[sys.executable, "-c", report.format(-0.5)]),
        "elsewhere": Task.create("elsewhere", "other", command=[sys.executable, "-c", report.format(0.9)]),
    }
    cursor = streams.last_event_id(conn)
    for task in watched.values():
        task.enqueue("cpu")
    with WorkerProcess("--queue", "cpu"):
        for task in watched.values():
            assert wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED).status == TaskStatus.COMPLETED
    happened = streams.follow_events(conn, cursor, 0.001, count=1000)
    for service in (TriggerService(conn, name="a"), TriggerService(conn, name="b")):  # two services
        for event in happened:
            service._on_event(event, [])
    fired = [record for _, record in Queue("default").tasks()]
    assert [(r.name, r.parent) for r in fired] == [("retrain (high score)", template.id)]  # once, for "at zero"
    with pytest.raises(UnsupportedCall, match=r"clearml TriggerScheduler.add_model_trigger \(trainyard has no model"):
        TriggerScheduler().add_model_trigger(name="deploy")
    with pytest.raises(UnsupportedCall, match=r"add_dataset_trigger \(trainyard has no datasets .* add_task_trigger\("):
        TriggerScheduler().add_dataset_trigger(name="retrain on new data")


def test_a_metric_threshold_fires_on_the_point_that_crosses_it_while_the_task_still_runs(conn, tmp_path):
    """The trigger service reads the running task's metric stream: the point that reaches the
    threshold (0 here) fires the trigger while the task runs (it waits on a FIFO until the test has
    seen the firing), once however many points cross; a task whose points stay below never fires."""
    Queue.create("default", exist_ok=True)
    Queue.create("cpu", exist_ok=True)
    template = Task.create("retrain", "examples", command=["true"])
    TriggerScheduler().add_task_trigger(
        name="crossed",
        schedule_task_id=template.id,
        schedule_queue="default",
        trigger_project="examples",
        trigger_on_metric="loss",
        trigger_on_variant="val",
        trigger_on_sign="min",
        trigger_on_threshold=0.0,
    )
    [trigger] = TriggerScheduler().get_triggers()
    script = (
        "import sys; from trainyard import current_task\n"
        "for step, value in enumerate(map(float, sys.argv[2:])):\n"
        "    current_task().log_metric('loss', 'val', value, step)\n"
        "if sys.argv[1] != '-':\n"
        "    open(sys.argv[1]).read()\n"  # blocks until the test opens the FIFO for writing
    )
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    above = Task.create("stays above", "examples", command=[sys.executable, "-c", script, "-", "2", "1"])
    crosses = Task.create("crosses", "examples", command=[sys.executable, "-c", script, str(fifo), "3", "0", "-1"])
    service = TriggerService(conn, name="metrics")
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        with WorkerProcess("--queue", "cpu"):
            above.enqueue("cpu")
            crosses.enqueue("cpu")
            [fired] = await_fires(conn, 1, trigger.id)
            assert fired["subject"] == crosses.id
            assert Task.get(crosses.id).status == TaskStatus.RUNNING  # fired on the point, not on the end
            assert Task.get(above.id).status == TaskStatus.COMPLETED
            fifo.write_text("go")
            assert wait_status(crosses, TaskStatus.COMPLETED, TaskStatus.FAILED).status == TaskStatus.COMPLETED
    finally:
        service.stop_event.set()
        thread.join()
    assert [f["subject"] for _, f in fires(conn) if f["trigger"] == trigger.id] == [crosses.id]  # once
    [(_, clone)] = Queue("default").tasks()
    assert (clone.name, clone.parent, clone.id) == ("retrain (crossed)", template.id, fired["started"])


def test_the_optimiser_runs_in_this_process_as_clearmls_does_with_a_callback_from_the_script(conn):
    from trainyard.clearml.automation import HyperParameterOptimizer, RandomSearch, UniformParameterRange

    trial = (
        "from trainyard import current_task as c; t = c(); "
        "t.log_metric('loss', 'val', (t.get_parameter('Args/x') - 0.3) ** 2)"
    )
    base = Task.create("trial", "hpo", command=[sys.executable, "-c", trial], parameters={"Args/x": 0.5})
    done = []

    def job_complete(job_id, objective_value, objective_iteration, job_parameters, top_performance_job_id):
        done.append(job_id)

    optimizer = HyperParameterOptimizer(
        base_task_id=ClearmlTask.get_task(task_id=base.id),
        hyper_parameters=[UniformParameterRange("Args/x", min_value=0.0, max_value=1.0)],
        objective_metric_title="loss",
        objective_metric_series="val",
        objective_metric_sign="min",
        optimizer_class=RandomSearch,
        max_number_of_concurrent_tasks=2,
        total_max_jobs=3,
    )
    optimizer.start_locally(job_complete_callback=job_complete)  # trials on an in-process worker
    assert optimizer.wait()
    top = optimizer.get_top_experiments(2)
    assert all(isinstance(t, ClearmlTask) and t.status == "completed" for t in top) and len(top) == 2
    assert sorted(done) == sorted(t.id for t in Task.list(project="hpo", tag="optimization", limit=10))
    optimizer.stop()


def test_the_optimiser_keeps_its_study_on_the_current_task_and_makes_no_other_task_as_clearml(conn, tmp_path):
    """ClearML's optimiser reports to ``Task.current_task()`` (the script's ``Task.init`` task, of
    type optimizer in ClearML's example) and spawns only the trials. Here too: the script's task
    holds the study and is the trials' parent; no ``Optimizing: ...`` task is made."""
    trial = (
        "from trainyard import current_task as c; t = c(); "
        "t.log_metric('loss', 'val', (t.get_parameter('Args/x') - 0.3) ** 2)"
    )
    base = Task.create("trial", "hpo-count", command=[sys.executable, "-c", trial], parameters={"Args/x": 0.5})
    script = tmp_path / "optimize.py"
    script.write_text(
        "import sys\n"
        "from trainyard.clearml import Task\n"
        "from trainyard.clearml.automation import HyperParameterOptimizer, RandomSearch, UniformParameterRange\n"
        "task = Task.init(project_name='hpo-count', task_name='Automatic Hyper-Parameter Optimization',\n"
        "                 task_type=Task.TaskTypes.optimizer, reuse_last_task_id=False)\n"
        "optimizer = HyperParameterOptimizer(\n"
        "    base_task_id=sys.argv[1],\n"
        "    hyper_parameters=[UniformParameterRange('Args/x', min_value=0.0, max_value=1.0)],\n"
        "    objective_metric_title='loss', objective_metric_series='val', objective_metric_sign='min',\n"
        "    optimizer_class=RandomSearch, max_number_of_concurrent_tasks=2, total_max_jobs=3,\n"
        ")\n"
        "optimizer.start_locally()\n"
        "optimizer.wait()\n"
        "print('top', [t.id for t in optimizer.get_top_experiments(3)])\n"
        "optimizer.stop()\n"
    )
    proc = run_script(script, base.id)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    controller = Task.get_task(project="hpo-count", name="Automatic Hyper-Parameter Optimization")
    trials = Task.list(project="hpo-count", tag="optimization", limit=50)
    made = {t.id for t in Task.list(project="hpo-count", limit=50)} - {base.id}
    assert made == {controller.id, *(t.id for t in trials)} and len(trials) == 3  # ClearML's count: 1 + trials
    assert all(t.parent == controller.id for t in trials)
    assert not [t for t in Task.list(limit=200) if t.name.startswith("Optimizing:")]
    assert controller.status == TaskStatus.COMPLETED and controller.data.type.value == "optimizer"
    assert controller.get_parameters()["opt/total_max_jobs"] == 3  # ClearML's `opt` section
    assert studies.load(conn, controller.id)["status"] == "completed"  # the study is the task's
    [top] = [line for line in proc.stdout.splitlines() if line.startswith("top ")]
    assert sorted(ast.literal_eval(top.removeprefix("top "))) == sorted(t.id for t in trials)


def _join(*jobs) -> None:
    for job in jobs:
        if job.thread is not None:
            job.thread.join(timeout=60)


def test_a_scheduled_function_runs_in_a_thread_of_the_scheduler_s_process_at_each_tick(conn):
    """ClearML's ``add_task(schedule_function=...)``: the function is called in a thread of the
    scheduler's process at ClearML's interval; nothing is stored in Redis (a function cannot be)."""
    calls: list[str] = []
    slow_started, release = threading.Event(), threading.Event()

    def tidy():
        calls.append(threading.current_thread().name)

    def slow():
        calls.append("slow")
        slow_started.set()
        release.wait(60)

    scheduler = TaskScheduler()
    scheduler.add_task(schedule_function=tidy, name="tidy", minute=15)
    scheduler.add_task(schedule_function=tidy, name="once now", hour=1, execute_immediately=True, recurring=False)
    scheduler.add_task(schedule_function=slow, name="slow", minute=15, single_instance=True)
    by_name = {s.name: s for s in scheduler.get_scheduled_tasks()}
    assert (by_name["tidy"].kind, by_name["tidy"].cron) == ("function", "*/15 * * * *")
    assert by_name["tidy"].function == f"{__name__}:{tidy.__qualname__}"
    assert schedules.user_schedules(conn) == []  # it lives in this process only
    every, once, blocking = scheduler._native.functions

    service = TriggerService(conn, functions=scheduler._native.functions)
    start = 1_800_000_000.0  # 15-minute aligned
    service.fire_due([], start - 1)  # the service starts: "once now" runs at once, the others wait
    _join(once)
    assert calls == ["schedule-once now"] and once not in service.functions  # not recurring: dropped
    service.fire_due([], start + 1)  # the tick: tidy and slow
    _join(every)
    assert slow_started.wait(60) and sorted(calls) == ["schedule-once now", "schedule-tidy", "slow"]
    service.fire_due([], start + 900 + 1)  # the next tick: slow still runs, so it is skipped
    _join(every)
    assert calls.count("schedule-tidy") == 2 and calls.count("slow") == 1
    release.set()
    _join(blocking)
    records = [f for _, f in fires(conn)]
    assert [(f["name"], f["tick"]) for f in records if "skipped" not in f] == [
        ("once now", start - 1),
        ("tidy", start),
        ("slow", start),
        ("tidy", start + 900),
    ]
    assert [f["name"] for f in records if f.get("skipped")] == ["slow"]
    assert scheduler.remove_task(tidy) and [s.name for s in scheduler.get_scheduled_tasks()] == ["slow"]


def test_the_native_scheduler_calls_its_function_at_each_real_tick(conn):
    """trainyard's own ``TaskScheduler.add_function`` (with a seconds field): a running trigger
    service calls it on consecutive ticks."""
    from trainyard.controller.schedules import TaskScheduler as NativeScheduler

    called = threading.Semaphore(0)
    native = NativeScheduler(conn)
    every_s = native.add_function(called.release, cron="* * * * * */1", name="every second")
    service = TriggerService(conn, functions=native.functions)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        assert called.acquire(timeout=60) and called.acquire(timeout=60)
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    ticks = [f["tick"] for _, f in fires(conn) if f["trigger"] == every_s.id]
    # whole-second ticks, each once (a service that fell behind under load fires the latest tick only)
    assert len(ticks) >= 2 and all(t == int(t) for t in ticks) and all(b > a for a, b in zip(ticks, ticks[1:]))


SCHEDULER_SCRIPT = """
from trainyard.clearml.automation import TaskScheduler


def greet():
    print("hello from the scheduler's thread", flush=True)


scheduler = TaskScheduler()
scheduler.add_task(schedule_task_id="{template}", queue="default", name="nightly", hour=1)
scheduler.add_task(schedule_function=greet, name="greet", minute=1, execute_immediately=True)
scheduler.{start}
print("scheduler stopped", flush=True)
"""


def test_start_runs_the_function_jobs_in_this_process_until_sigterm(conn, tmp_path):
    Queue.create("default", exist_ok=True)
    template = Task.create("nightly", "examples", command=["true"])
    script = tmp_path / "scheduler.py"
    script.write_text(SCHEDULER_SCRIPT.format(template=template.id, start="start()"))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        [fired] = await_fires(conn, 1, "greet", key="name")
        assert fired["by"].endswith(f"-triggers-{proc.pid}")  # the script's own trigger service
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "hello from the scheduler's thread" in out and out.rstrip().endswith("scheduler stopped")
    assert [s.name for s in schedules.user_schedules(conn)] == ["nightly"]


def test_start_remotely_sends_the_script_with_its_functions_to_a_services_worker(conn, tmp_path):
    """As PipelineController callbacks do: the script is the scheduler task's code; the services
    worker runs it again, where the same calls add the same jobs (the stored task job is not stored
    twice) and ``start_remotely`` starts the scheduler, calling the function there."""
    Queue.create("default", exist_ok=True)
    Queue.create("services", exist_ok=True)
    template = Task.create("nightly", "examples", command=["true"])
    script = tmp_path / "scheduler.py"
    script.write_text(SCHEDULER_SCRIPT.format(template=template.id, start="start_remotely(queue='services')"))
    local = run_script(script)
    assert local.returncode == 0, local.stderr
    assert "hello" not in local.stdout and "scheduler stopped" not in local.stdout  # it left at start_remotely
    task = Task.get_task(project="DevOps", name="Scheduler")
    assert task.status == TaskStatus.QUEUED and task.data.type.value == "controller"
    with WorkerProcess("-q", "services", "--services-mode", "2"):
        [fired] = await_fires(conn, 1, "greet", key="name")
        wait_for_log(conn, task.id, "hello from the scheduler's thread")
        assert [s.name for s in schedules.user_schedules(conn)] == ["nightly"]  # not added twice
        Task.get(task.id).abort("test over")
        done = wait_status(task, TaskStatus.ABORTED, TaskStatus.FAILED, TaskStatus.COMPLETED)
    assert done.status == TaskStatus.ABORTED
    assert fired["function"].endswith(":greet")


def test_a_trigger_function_is_called_with_the_id_of_the_task_that_fired_it(conn):
    """ClearML's ``add_task_trigger(schedule_function=...)``: ``function(task_id)`` runs in a thread
    of the trigger service's process, once per watched task; nothing is stored in Redis for it."""
    Queue.create("default", exist_ok=True)
    Queue.create("cpu", exist_ok=True)
    template = Task.create("alert", "examples", command=["true"])
    calls: list[tuple[str, str]] = []
    busy, release = threading.Event(), threading.Event()

    def on_failed(task_id):
        calls.append((threading.current_thread().name, task_id))

    def slow(task_id):
        calls.append(("slow", task_id))
        busy.set()
        release.wait(60)

    scheduler = TriggerScheduler()
    scheduler.add_task_trigger(
        name="failed",
        schedule_function=on_failed,
        schedule_task_id=template.id,  # both: the function is called and the template cloned, as in ClearML
        schedule_queue="default",
        trigger_project="examples",
        trigger_on_status=["failed"],
    )
    scheduler.add_task_trigger(
        name="slow",
        schedule_function=slow,
        trigger_project="examples",
        trigger_on_status=["completed"],
        single_instance=True,
    )
    scheduler.add_task_trigger(  # ClearML's trigger_example: a function on a metric threshold (0 counts here)
        name="performance high-score",
        schedule_function=on_failed,
        trigger_project="examples",
        trigger_on_metric="epoch_accuracy",
        trigger_on_variant="epoch_accuracy",
        trigger_on_threshold=0.0,
        trigger_on_sign="max",
    )
    stored, *functions = scheduler.get_triggers()
    assert (stored.task_id, stored.function) == (template.id, None)
    assert [(t.name, t.function) for t in functions] == [
        ("failed", f"{__name__}:{on_failed.__qualname__}"),
        ("slow", f"{__name__}:{slow.__qualname__}"),
        ("performance high-score", f"{__name__}:{on_failed.__qualname__}"),
    ]
    assert [t.id for t in scheduler._stored()] == [stored.id]  # the functions live in this process only
    with pytest.raises(InvalidInput, match=r"schedule_function=\.\.\.\) needs a name"):
        scheduler.add_task_trigger(schedule_function=on_failed, trigger_on_status=["failed"])
    with pytest.raises(InvalidInput, match="needs schedule_task_id and schedule_queue, or schedule_function"):
        scheduler.add_task_trigger(name="nothing", trigger_on_status=["failed"])
    with pytest.raises(UnsupportedCall, match=r"add_task_trigger\(single_instance=\.\.\.\)"):
        scheduler.add_task_trigger(schedule_task_id=template.id, schedule_queue="default", single_instance=True)
    assert len(scheduler.get_triggers()) == 4  # refused calls added nothing

    report = "from trainyard import current_task; current_task().log_metric('epoch_accuracy', 'epoch_accuracy', {})"
    watched = {
        "fails": Task.create("fails", "examples", command=["false"]),
        "first": Task.create("first", "examples", command=["true"]),
        "second": Task.create("second", "examples", command=[sys.executable, "-c", report.format(0.0)]),
        "elsewhere": Task.create("elsewhere", "other", command=["false"]),
    }
    cursor = streams.last_event_id(conn)
    with WorkerProcess("--queue", "cpu"):
        for task in watched.values():  # one after the other: "first" completes before "second"
            task.enqueue("cpu")
            wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED)
    happened = streams.follow_events(conn, cursor, 0.001, count=1000)
    service = TriggerService(conn, function_triggers=scheduler._native.function_triggers)
    for _ in range(2):  # the same events twice: each trigger calls once per task
        for event in happened:
            service._on_event(event, [])
    assert busy.wait(60)
    failed_job, slow_job, metric_job = service.function_triggers
    _join(failed_job, metric_job)
    assert sorted(calls) == [
        ("slow", watched["first"].id),
        ("trigger-failed", watched["fails"].id),
        ("trigger-performance high-score", watched["second"].id),
    ]
    release.set()
    _join(slow_job)
    records = [f for _, f in fires(conn)]
    called = [(f["name"], f["subject"]) for f in records if "function" in f and not f.get("skipped")]
    assert sorted(called) == [
        ("failed", watched["fails"].id),
        ("performance high-score", watched["second"].id),
        ("slow", watched["first"].id),
    ]
    assert [(f["name"], f["subject"]) for f in records if f.get("skipped")] == [("slow", watched["second"].id)]
    [(_, clone)] = Queue("default").tasks()  # the stored trigger cloned its template for the failed task
    assert (clone.name, clone.parent) == ("alert (failed)", template.id)


def test_a_trigger_function_on_a_metric_is_called_on_the_point_that_crosses_while_the_task_runs(conn, tmp_path):
    """A function trigger on a metric without a status watches running tasks' metric streams as a
    stored one does: the crossing point calls ``function(task_id)`` while the task still runs."""
    Queue.create("cpu", exist_ok=True)
    seen: list[tuple[str, str]] = []
    called = threading.Event()

    def on_crossed(task_id):
        seen.append((task_id, Task.get(task_id).status.value))
        called.set()

    scheduler = TriggerScheduler()
    scheduler.add_task_trigger(
        name="crossed",
        schedule_function=on_crossed,
        trigger_project="examples",
        trigger_on_metric="loss",
        trigger_on_variant="val",
        trigger_on_threshold=0.0,  # sign: ClearML's default, min
    )
    script = (
        "import sys; from trainyard import current_task\n"
        "for step, value in enumerate(map(float, sys.argv[2:])):\n"
        "    current_task().log_metric('loss', 'val', value, step)\n"
        "open(sys.argv[1]).read()\n"  # blocks until the test opens the FIFO for writing
    )
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    crosses = Task.create("crosses", "examples", command=[sys.executable, "-c", script, str(fifo), "3", "0", "-1"])
    service = TriggerService(conn, name="metrics", function_triggers=scheduler._native.function_triggers)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        with WorkerProcess("--queue", "cpu"):
            crosses.enqueue("cpu")
            assert called.wait(120)
            fifo.write_text("go")
            assert wait_status(crosses, TaskStatus.COMPLETED, TaskStatus.FAILED).status == TaskStatus.COMPLETED
    finally:
        service.stop_event.set()
        thread.join(timeout=60)
    assert seen == [(crosses.id, "running")]  # called on the point, once however many points cross


TRIGGER_SCRIPT = """
from trainyard.clearml import Task
from trainyard.clearml.automation import TriggerScheduler


def trigger_task_func(task_id):
    task = Task.get_task(task_id=task_id)
    print("task {{}} is {{}}".format(task.id, task.status), flush=True)


trigger = TriggerScheduler(pooling_frequency_minutes=1.0)
trigger.add_task_trigger(schedule_task_id="{template}", schedule_queue="default", name="retrain",
                         trigger_project="watched", trigger_on_status=["failed"])
trigger.add_task_trigger(name="on done", schedule_function=trigger_task_func, trigger_project="watched",
                         trigger_on_status=["completed"])
trigger.{start}
print("trigger scheduler stopped", flush=True)
"""


def _watch_two_tasks(conn) -> Task:
    """A task elsewhere, then one the "on done" trigger watches, both completed on a real worker."""
    Queue.create("cpu", exist_ok=True)
    with WorkerProcess("--queue", "cpu"):
        for project in ("other", "watched"):
            task = Task.create("train", project, command=["true"])
            task.enqueue("cpu")
            assert wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED).status == TaskStatus.COMPLETED
    return task


def test_trigger_scheduler_start_calls_the_function_in_this_process_until_sigterm(conn, tmp_path):
    Queue.create("default", exist_ok=True)
    template = Task.create("retrain", "examples", command=["true"])
    script = tmp_path / "trigger.py"
    script.write_text(TRIGGER_SCRIPT.format(template=template.id, start="start()"))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        started = proc.stdout.readline()  # the service reads events from its start: wait for it
        assert started.startswith("trigger service ") and started.rstrip().endswith("started"), started
        watched = _watch_two_tasks(conn)
        fired = await_fires(conn, 1, "on done", key="name")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [f["subject"] for f in fired] == [watched.id]  # the task elsewhere, done first, never fired it
    assert fired[0]["by"].endswith(f"-triggers-{proc.pid}")  # the script's own trigger service
    assert f"task {watched.id} is completed" in out and out.rstrip().endswith("trigger scheduler stopped")
    assert [t.name for t in TriggerScheduler()._stored()] == ["retrain"]


def test_trigger_scheduler_start_remotely_sends_the_script_with_its_functions_to_a_services_worker(conn, tmp_path):
    Queue.create("default", exist_ok=True)
    Queue.create("services", exist_ok=True)
    template = Task.create("retrain", "examples", command=["true"])
    script = tmp_path / "trigger.py"
    script.write_text(TRIGGER_SCRIPT.format(template=template.id, start="start_remotely(queue='services')"))
    local = run_script(script)
    assert local.returncode == 0, local.stderr
    assert "stopped" not in local.stdout  # it left at start_remotely
    task = Task.get_task(project="DevOps", name="Scheduler")
    assert task.status == TaskStatus.QUEUED and task.data.type.value == "controller"
    with WorkerProcess("-q", "services", "--services-mode", "2"):
        wait_for_log(conn, task.id, "trigger service", timeout=120)  # it reads events from its start
        watched = _watch_two_tasks(conn)
        [fired] = await_fires(conn, 1, "on done", key="name")
        wait_for_log(conn, task.id, f"task {watched.id} is completed")
        assert [t.name for t in TriggerScheduler()._stored()] == ["retrain"]  # not stored twice
        Task.get(task.id).abort("test over")
        done = wait_status(task, TaskStatus.ABORTED, TaskStatus.FAILED, TaskStatus.COMPLETED)
    assert done.status == TaskStatus.ABORTED
    assert (fired["subject"], fired["function"].endswith(":trigger_task_func")) == (watched.id, True)


@pytest.mark.parametrize(("sign", "stored"), [(None, "min"), ("minimum", "min"), ("maximum", "max"), ("Max", "max")])
def test_trigger_on_sign_takes_clearmls_words_and_its_default_min(conn, sign, stored):
    """ClearML filters on the running min unless the sign is "max"/"maximum" (``sign_max = ... in
    ('max', 'maximum')``), whatever its docstring's wording."""
    template = Task.create("retrain", "examples", command=["true"])
    scheduler = TriggerScheduler()
    metric = {"trigger_on_metric": "loss", "trigger_on_variant": "val", "trigger_on_threshold": 0.1}
    scheduler.add_task_trigger(schedule_task_id=template.id, schedule_queue="default", trigger_on_sign=sign, **metric)
    assert [t.sign for t in scheduler.get_triggers()] == [stored]
    with pytest.raises(InvalidInput, match="trigger_on_sign must be 'max', 'maximum', 'min' or 'minimum', got 'up'"):
        scheduler.add_task_trigger(
            schedule_task_id=template.id, schedule_queue="default", trigger_on_sign="up", **metric
        )


def test_trigger_name_dev_tasks_and_add_tag_as_clearml_reads_them(conn, tmp_path):
    """``trigger_name`` is searched in the name (ClearML's is a regular expression: a plain one is
    a part of the name; a pattern is refused in one line), ``trigger_exclude_dev_tasks=True`` skips
    tasks that ran outside a worker (``Task.init`` in a script: ClearML's development tasks), and
    ``add_tag`` tags each clone with the trigger's name (default) or the given tag."""
    Queue.create("default", exist_ok=True)
    Queue.create("cpu", exist_ok=True)
    template = Task.create("retrain", "examples", command=["true"])
    scheduler = TriggerScheduler()
    scheduler.add_task_trigger(
        name="resnet done",
        schedule_task_id=template.id,
        schedule_queue="default",
        trigger_project="examples",
        trigger_name="resnet",
        trigger_on_status=["completed"],
        trigger_exclude_dev_tasks=True,
    )
    scheduler.add_task_trigger(
        name="any vgg",
        schedule_task_id=template.id,
        schedule_queue="default",
        trigger_project="examples",
        trigger_name="vgg",
        trigger_on_status=["completed"],
        add_tag="from-vgg",
    )
    with pytest.raises(UnsupportedCall, match=r"add_task_trigger\(trigger_name=<a regular expression>\) \(a trig"):
        scheduler.add_task_trigger(name="re", schedule_task_id=template.id, schedule_queue="default",
                                   trigger_name="^res.*$")  # fmt: skip
    cursor = streams.last_event_id(conn)
    on_worker = {name: Task.create(name, "examples", command=["true"]) for name in ("train-resnet-50", "train-vgg16")}
    for task in on_worker.values():
        task.enqueue("cpu")
    with WorkerProcess("--queue", "cpu"):
        for task in on_worker.values():
            assert wait_status(task, TaskStatus.COMPLETED, TaskStatus.FAILED).status == TaskStatus.COMPLETED
    script = tmp_path / "dev.py"  # a developer's run: Task.init outside any worker
    script.write_text("from trainyard.clearml import Task\nTask.init('examples', 'dev-resnet-vgg')\nprint('ran')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    dev = ClearmlTask.get_task(project_name="examples", task_name="dev-resnet-vgg")
    assert dev.status == "completed"
    happened = streams.follow_events(conn, cursor, 0.001, count=1000)
    service = TriggerService(conn, name="a")
    for event in happened:
        service._on_event(event, [])
    fired = sorted((r.name, r.tags[-1], [f for f in r.tags if f.startswith("trigger:")] != []) for _, r in
                   Queue("default").tasks())  # fmt: skip
    # resnet: the worker's run only (not the dev run); vgg: both runs, tagged as asked
    assert fired == [
        ("retrain (any vgg)", "from-vgg", True),
        ("retrain (any vgg)", "from-vgg", True),
        ("retrain (resnet done)", "resnet done", True),
    ]
