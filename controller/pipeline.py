"""``Pipeline``: a DAG of steps built from template tasks or Python functions (ClearML-like names).

pipe = Pipeline("train-pipeline", project="vision", version="1.0.0")
pipe.add_parameter("lr", 0.01)
pipe.set_default_queue("cpu")
pipe.add_step("prep", base_task="vision/prepare-data")
pipe.add_step("train", base_task="vision/train", parameter_override={
    "Args/dataset": "${prep.artifacts.dataset.url}", "Args/lr": "${pipeline.lr}"})
pipe.start(queue="services")     # the controller runs as a task on a services worker
run = pipe.wait()
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from redis import Redis

from ..queues.backend import documents
from ..queues.connection import resolve
from ..queues.errors import InvalidInput, TaskNotFound, TrainyardError
from ..queues.options import ExecutionOptions
from ..queues.queue_registry import QueueRegistry
from ..queues.record import TaskRecord, TaskType
from ..queues.store import TaskStore
from ..queues.task import Task
from . import dag, run_store
from .engine import Controller, check_queues
from .model import PipelineRun, StepSpec, StepState
from .refs import find_references

STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
CONTROLLER_COMMAND = ["python", "-m", "trainyard.controller.run"]


def callback_path(fn: Callable | str | None) -> str | None:
    """A callback as ``module:qualname`` (how it travels to a controller on another machine)."""
    if fn is None or isinstance(fn, str):
        return fn
    return f"{fn.__module__}:{fn.__qualname__}"


class Pipeline:
    def __init__(
        self,
        name: str,
        project: str = "default",
        version: str = "1.0.0",
        default_queue: str | None = None,
        abort_on_failure: bool = True,
        connection: Redis | None = None,
    ):
        if not name or not name.strip():
            raise InvalidInput("a pipeline needs a name")
        self.name, self.project, self.version = name, project, version
        self.default_queue = default_queue
        self.abort_on_failure = abort_on_failure
        self.parameters: dict[str, Any] = {}
        self.steps: dict[str, StepSpec] = {}
        self.callbacks: dict[str, Callable] = {}
        self._conn = connection
        self.run_id: str | None = None

    @property
    def connection(self) -> Redis:
        if self._conn is None:
            self._conn = resolve(None)
        return self._conn

    # -- building ------------------------------------------------------------------------------
    def add_parameter(self, name: str, default: Any = None, description: str | None = None) -> Pipeline:
        if not STEP_NAME.match(name):
            raise InvalidInput(f"bad pipeline parameter name {name!r}")
        self.parameters[name] = default
        return self

    def set_default_queue(self, queue: str) -> Pipeline:
        self.default_queue = queue
        return self

    def add_step(
        self,
        name: str,
        base_task: Task | str | None = None,
        parents: Sequence[str] = (),
        parameter_override: Mapping[str, Any] | None = None,
        configuration_overrides: Mapping[str, Any] | None = None,
        queue: str | None = None,
        cache: bool = False,
        *,
        pre_callback: Callable | str | None = None,
        post_callback: Callable | str | None = None,
        force_rerun: bool = False,
        **options: Any,
    ) -> Pipeline:
        """A step that clones ``base_task`` (a Task, its id, or ``"project/name"``), overrides its
        parameters (values may be ``${...}`` references) and enqueues the clone. ``options`` are
        execution options (``queues/options.py``: retries, time_limit, mode, docker_image,
        requirements, gpus, env, ...) that override the base task's."""
        if base_task is None:
            raise InvalidInput(f"step {name!r} needs a base_task (a task, its id, or 'project/name')")
        from ..queues.params import check_parameters

        checked = ExecutionOptions.of(options, f"execution option of step {name!r}:")
        spec = StepSpec(
            name=name,
            base_task=base_task.id if isinstance(base_task, Task) else str(base_task),
            parents=list(parents),
            parameter_override=check_parameters(parameter_override or {}),
            configuration_overrides=dict(configuration_overrides or {}),
            queue=queue,
            cache=cache,
            force_rerun=force_rerun,
            pre_callback=self._keep(pre_callback),
            post_callback=self._keep(post_callback),
            **checked.given(),
        )
        return self._add(spec)

    def add_function_step(
        self,
        name: str,
        function: Callable,
        kwargs: Mapping[str, Any] | None = None,
        returns: Sequence[str] = (),
        parents: Sequence[str] = (),
        queue: str | None = None,
        cache: bool = False,
        *,
        pre_callback: Callable | str | None = None,
        post_callback: Callable | str | None = None,
        force_rerun: bool = False,
        parameter_override: Mapping[str, Any] | None = None,
        runner: str | None = None,
        **options: Any,
    ) -> Pipeline:
        """A step that runs ``function(**kwargs)`` as a task; ``returns`` names its return values,
        which later steps reference as ``${name.<return>}``. ``parameter_override`` sets more of the
        step task's parameters (references allowed); ``runner`` (``module:function``) replaces the
        in-task code that calls the function (see ``functions.function_spec``). ``options`` are
        execution options (``queues/options.py``: retries, time_limit, requirements, mode, ...)."""
        from ..queues.params import check_parameters
        from .functions import DEFAULT_RUNNER, function_spec, step_arguments

        checked = ExecutionOptions.of(options, f"execution option of step {name!r}:")
        requirements = checked.requirements or []
        fn = function_spec(
            function, returns=list(returns), name=name, requirements=list(requirements), runner=runner or DEFAULT_RUNNER
        )
        step_arguments(fn, kwargs)  # argument names and JSON values are checked now, not at launch
        spec = StepSpec(
            name=name,
            function=fn,
            kwargs=dict(kwargs or {}),
            parameter_override=check_parameters(parameter_override or {}),
            returns=list(returns),
            parents=list(parents),
            queue=queue,
            cache=cache,
            force_rerun=force_rerun,
            pre_callback=self._keep(pre_callback),
            post_callback=self._keep(post_callback),
            **{**checked.given(), "requirements": requirements or None},
        )
        return self._add(spec)

    def _add(self, spec: StepSpec) -> Pipeline:
        if not STEP_NAME.match(spec.name):
            raise InvalidInput(f"bad step name {spec.name!r}: letters, digits, '_' and '-', starting with a letter")
        if spec.name in self.steps or spec.name == "pipeline":
            raise InvalidInput(f"step {spec.name!r} is already in the pipeline")
        self.steps[spec.name] = spec
        return self

    def _keep(self, fn: Callable | str | None) -> str | None:
        path = callback_path(fn)
        if path and callable(fn):
            self.callbacks[path] = fn
        return path

    # -- checking ------------------------------------------------------------------------------
    def validate(self) -> list[str]:
        """Everything that can be checked before anything is enqueued; returns the run order."""
        if not self.steps:
            raise InvalidInput(f"pipeline {self.name!r} has no steps")
        order = dag.check(self.steps, self.parameters)
        store = TaskStore(self.connection)
        for name, step in self.steps.items():
            if step.base_task is not None:
                base = self._base(store, name, step.base_task)
                self._check_artifact_refs(name, step, base)
        return order

    def _base(self, store: TaskStore, name: str, ref: str) -> TaskRecord:
        try:
            if "/" in ref:
                project, _, task_name = ref.rpartition("/")
                return store.find_by_name(project, task_name)
            return store.get(ref)
        except TaskNotFound as exc:
            raise InvalidInput(f"step {name!r}: base task {ref!r} not found ({exc})") from None

    def _check_artifact_refs(self, name: str, step: StepSpec, base: TaskRecord) -> None:
        """A reference to an artifact of a template step that has produced artifacts before must name
        one of them (templates that never ran cannot be checked until they do)."""
        for ref in find_references([s.parameter_override for s in self.steps.values()]):
            if ref.step == name and ref.path[0] == "artifacts" and base.artifacts and ref.path[1] not in base.artifacts:
                raise InvalidInput(
                    f"{ref.text}: step {name!r} (from task {base.id}) produces no artifact {ref.path[1]!r} "
                    f"(it produced: {', '.join(sorted(base.artifacts))})"
                )

    def _new_run(self, controller_queue: str | None, local_queue: str | None, force_rerun: bool) -> PipelineRun:
        """Validate everything, then create the controller task and the run (nothing is enqueued)."""
        self.validate()
        conn = self.connection
        for path in [s.pre_callback for s in self.steps.values()] + [s.post_callback for s in self.steps.values()]:
            if path and controller_queue and path.startswith("__main__:"):
                raise InvalidInput(
                    f"callback {path} is defined in the main script: a controller on a services "
                    "worker cannot import it (move it to a module, or use start_locally())"
                )
        probe = PipelineRun(
            id="probe", name=self.name, steps=self.steps, default_queue=self.default_queue, local_queue=local_queue
        )
        if local_queue is None:
            check_queues(conn, probe)
        if controller_queue:
            QueueRegistry(conn).require(controller_queue)
        task = Task.create(
            f"{self.name} v{self.version}",
            self.project,
            command=CONTROLLER_COMMAND,
            task_type=TaskType.CONTROLLER,
            tags=["pipeline"],
            connection=conn,
            parameters={f"Args/{k}": v for k, v in self.parameters.items()},
        )
        run = self._run_record(task.id, controller_queue, local_queue, force_rerun, dict(self.steps))
        run_store.save(conn, run)
        self.run_id = run.id
        return run

    # -- running -------------------------------------------------------------------------------
    def start(self, queue: str = "services", force_rerun: bool = False, **parameters: Any) -> str:
        """Run the controller as a task on ``queue`` (a services worker); returns the run id."""
        self._set_parameters(parameters)
        run = self._new_run(queue, None, force_rerun)
        Task.get(run.id, self.connection).enqueue(queue)
        return run.id

    def start_locally(
        self, run_steps_locally: bool = False, force_rerun: bool = False, **parameters: Any
    ) -> PipelineRun:
        """Run the controller in this process (until the pipeline ends). With ``run_steps_locally``
        the steps run here too, on an in-process worker, instead of on their queues."""
        self._set_parameters(parameters)
        local_queue = f"local-steps-{os.urandom(4).hex()}" if run_steps_locally else None
        run = self._new_run(None, local_queue, force_rerun)
        return run_here(self.connection, run.id, self.callbacks)

    def start_in_task(
        self, task_id: str, run_steps_locally: bool = False, force_rerun: bool = False, **parameters: Any
    ) -> PipelineRun:
        """Run the controller in this process as ``task_id``: a task that is running as this very
        process (a script that builds its pipeline and runs it as its own task, the way ClearML's
        controllers do; ``trainyard.clearml`` uses this). Its run id is the task id; a run of that
        task that exists already is resumed, and its finished steps are not run again."""
        self._set_parameters(parameters)
        conn = self.connection
        try:
            run = run_store.load(conn, task_id)
        except TaskNotFound:
            self.validate()
            local_queue = f"local-steps-{os.urandom(4).hex()}" if run_steps_locally else None
            run = self._run_record(
                task_id, Task.get(task_id, conn).data.execution.queue, local_queue, force_rerun, dict(self.steps)
            )
            if local_queue is None:
                check_queues(conn, run)
            run_store.save(conn, run)
        self.run_id = run.id
        return run_here(conn, run.id, self.callbacks, hold=False)

    def open_in_task(self, task_id: str, run_steps_locally: bool = False, force_rerun: bool = False) -> OpenRun:
        """Like :meth:`start_in_task`, but the run takes its steps while it runs: the controller
        runs in a thread of this process, :meth:`OpenRun.add_step` adds a step (built here with
        ``add_step`` / ``add_function_step``), :meth:`OpenRun.wait_step` blocks until one is over,
        and :meth:`OpenRun.close` ends the run once its steps are over (ClearML's decorator
        pipelines, whose steps are known only when the pipeline function calls them)."""
        conn = self.connection
        local_queue = f"local-steps-{os.urandom(4).hex()}" if run_steps_locally else None
        if local_queue is None and self.default_queue:
            QueueRegistry(conn).require(self.default_queue)
        run = self._run_record(task_id, Task.get(task_id, conn).data.execution.queue, local_queue, force_rerun, {})
        run_store.save(conn, run)
        self.run_id = run.id
        return OpenRun(self, Controller(conn, run.id, self.callbacks, open_ended=True))

    def _run_record(
        self, task_id: str, controller_queue: str | None, local_queue: str | None, force_rerun: bool, steps: dict
    ) -> PipelineRun:
        """This pipeline's run record for the controller task ``task_id``."""
        return PipelineRun(
            id=task_id,
            name=self.name,
            project=self.project,
            version=self.version,
            parameters=dict(self.parameters),
            default_queue=self.default_queue,
            abort_on_failure=self.abort_on_failure,
            force_rerun=force_rerun,
            steps=steps,
            controller_queue=controller_queue,
            local_queue=local_queue,
        )

    def _set_parameters(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if key not in self.parameters:
                raise InvalidInput(
                    f"unknown pipeline parameter {key!r} (known: {', '.join(self.parameters) or 'none'})"
                )
            self.parameters[key] = value

    def wait(self, timeout: float | None = None) -> PipelineRun:
        """Block until the controller task ends (event-driven); returns the run."""
        if self.run_id is None:
            raise InvalidInput("the pipeline has not been started")
        Task.get(self.run_id, self.connection).wait(timeout=timeout)
        return run_store.load(self.connection, self.run_id)

    def stop(self) -> None:
        """Stop the run: its controller aborts the running steps and skips the rest."""
        if self.run_id is None:
            raise InvalidInput("the pipeline has not been started")
        stop_run(self.connection, self.run_id)

    @property
    def run(self) -> PipelineRun:
        if self.run_id is None:
            raise InvalidInput("the pipeline has not been started")
        return run_store.load(self.connection, self.run_id)


class OpenRun:
    """A run whose controller runs in a thread of this process and takes steps as they come."""

    def __init__(self, pipeline: Pipeline, controller: Controller):
        self.pipeline = pipeline
        self.controller = controller
        self.result: PipelineRun | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{controller.run_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = run_here(self.controller.conn, self.controller.run_id, hold=False, controller=self.controller)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by close()
            self._error = exc
            self.controller._notify(over=True)

    def add_step(self, name: str) -> None:
        """Launch the pipeline's step ``name`` (added to it with add_step / add_function_step)."""
        self.controller.add_step(self.pipeline.steps[name])

    def wait_step(self, name: str, timeout: float | None = None) -> StepState:
        return self.controller.wait_step(name, timeout)

    def close(self) -> PipelineRun:
        """No more steps; wait for the run to end and return it."""
        self.controller.close()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self.result is not None
        return self.result


def stop_run(conn: Redis, run_id: str) -> PipelineRun:
    """Stop a run: a flag its controller checks and an abort of the controller's task; a run whose
    controller is gone (never started, crashed, aborted while queued) is ended here and now."""
    run = run_store.load(conn, run_id)
    documents.set_stop(conn, run_id, True)
    with contextlib.suppress(TrainyardError):  # already finished, or not started: the flag is enough
        Task.get(run.id, conn).abort("pipeline stopped")
    return end_if_orphaned(conn, run_store.load(conn, run_id), "aborted", "aborted: the pipeline was stopped")


def end_if_orphaned(conn: Redis, run: PipelineRun, status: str = "failed", reason: str | None = None) -> PipelineRun:
    """A run that says pending/running while its controller task on a services queue has ended
    (killed, crashed before it could say so, aborted while queued) is ended with ``status``."""
    if run.status not in ("pending", "running") or not run.controller_queue:
        return run
    try:
        controller = Task.get(run.id, conn)
    except TrainyardError:
        return run
    if controller.status.value not in ("completed", "failed", "aborted"):
        return run
    why = controller.data.runtime.error or controller.data.status_message or controller.status.value
    return Controller(conn, run.id).end(status, reason or f"the controller ended ({controller.status.value}): {why}")


def retry_run(conn: Redis, run_id: str, steps: Iterable[str] | None = None) -> PipelineRun:
    """Mark failed, aborted and skipped steps (or ``steps``) and everything downstream as pending."""
    run = end_if_orphaned(conn, run_store.load(conn, run_id))
    if run.status == "running":
        raise InvalidInput(f"pipeline run {run_id} is still running")
    roots = set(steps) if steps else {n for n, s in run.state.items() if s.status in ("failed", "aborted", "skipped")}
    unknown = roots - set(run.steps)
    if unknown:
        raise InvalidInput(f"unknown step(s): {', '.join(sorted(unknown))}")
    from .model import StepState

    for name in dag.descendants(run.steps, roots):
        run.state[name] = StepState()
    run.status, run.message, run.ended = "pending", None, None
    documents.set_stop(conn, run_id, False)
    run_store.save(conn, run)
    return run


def run_here(
    conn: Redis,
    run_id: str,
    callbacks: dict[str, Callable] | None = None,
    hold: bool = True,
    controller: Controller | None = None,
) -> PipelineRun:
    """Run (or resume) a run's controller in this process; its steps run on an in-process
    worker when the run was started with ``run_steps_locally``. With ``hold`` this process also
    runs the controller task (it heartbeats and ends it); without, something else does (a worker)."""
    from ..queues.queue import Queue
    from .in_process import LocalController, step_worker

    run = run_store.load(conn, run_id)
    local_queue = run.local_queue
    drain = thread = None
    try:
        if local_queue:
            QueueRegistry(conn).create(local_queue, description="steps of a local pipeline run", exist_ok=True)
            drain, thread = step_worker(conn, local_queue)
        controller = controller or Controller(conn, run_id, callbacks)
        if not hold:
            return controller.execute()
        with LocalController(conn, run_id) as holder:
            try:
                result = controller.execute()
            except BaseException as exc:
                holder.finish("failed", f"controller error: {exc}")
                raise
            holder.finish("completed" if result.status == "completed" else "failed", result.message)
        return result
    finally:
        if drain is not None:
            drain()
            thread.join(timeout=60)
        if local_queue:
            Queue(local_queue, conn).delete(force=True)


def resume(conn: Redis, run_id: str) -> PipelineRun | None:
    """Start a run's controller again the way it ran: on its services queue (returns None), or
    here (returns the finished run). Finished steps are never re-run."""
    run = run_store.load(conn, run_id)
    task = Task.get(run_id, conn)
    if task.status.value in ("queued", "running"):
        raise InvalidInput(f"pipeline run {run_id}'s controller is {task.status.value} already")
    if task.status.value != "draft":
        task.reset()
    documents.set_stop(conn, run_id, False)
    if run.controller_queue:
        task.enqueue(run.controller_queue)
        return None
    return run_here(conn, run_id)
