"""ClearML's examples/automation (programmatic_orchestration with toy_base_task), ported with only
the import line changed (`from clearml import Task` -> `from trainyard.clearml import Task`), run
as scripts and on a real worker; the results are ClearML's: the clone prints `Example_Param is 3`."""

from __future__ import annotations

from clearml_ported import copy_example, run_script
from workerproc import WorkerProcess, wait_status

from trainyard import Queue, Task, TaskStatus


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
