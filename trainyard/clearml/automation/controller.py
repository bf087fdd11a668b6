"""ClearML's ``PipelineController`` over trainyard's ``Pipeline``.

As in ClearML, the controller is the script itself, run as a task of type controller: ``start()``
stops the local run and enqueues the script on the services queue (``execute_remotely``); a services
worker runs it again, where the same calls build the same pipeline and ``start()`` runs trainyard's
event-driven controller in that process (:meth:`Pipeline.start_in_task`). Callbacks defined in the
script therefore work locally and on the services worker. ``start_locally()`` runs the controller
here, its steps on their queues or, with ``run_pipeline_steps_locally=True``, on an in-process worker.
"""

from __future__ import annotations

import functools
import inspect
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...controller.pipeline import Pipeline
from ...controller.refs import Resolver
from ...queues.errors import InvalidInput
from ...queues.queue import Queue
from ...queues.task import Task as NativeTask
from .. import task as clearml_task
from ..errors import Refusing, refuse_unknown, unsupported
from ..steps import ARTIFACT_SECTION
from ..task import Task, TaskTypes

RUNNER = "trainyard.clearml.steps:run_step"
_RETURN_REF = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_-]*)\.([^.{}\s]+)\s*\}$")
_NOT_RETURNS = ("id", "parameters", "artifacts", "outputs", "status")


@dataclass
class Node:
    """ClearML's ``PipelineController.Node``: what a callback is given about a step."""

    name: str
    base_task_id: str | None = None
    queue: str | None = None
    parents: list[str] = field(default_factory=list)
    timeout: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    executed: str | None = None  # the task id, once the step ran
    job_type: str | None = None
    cache_executed_step: bool = False
    status: str = "pending"


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


# ClearML arguments trainyard does not carry, per call: one given (not None, False or empty) is
# refused in one line naming it; so is a callable retry_on_failure (a number of retries is carried).
REFUSED: dict[str, tuple[str, ...]] = {
    "PipelineController": (
        "docker",
        "docker_args",
        "docker_bash_setup_script",
        "repo",
        "artifact_serialization_function",
        "artifact_deserialization_function",
    ),
    "PipelineController.add_step": (
        "task_overrides",
        "monitor_metrics",
        "monitor_artifacts",
        "monitor_models",
        "continue_on_fail",
        "base_task_factory",
        "status_change_callback",
        "continue_behaviour",
    ),
    "PipelineController.add_function_step": (
        "repo",
        "helper_functions",
        "docker_args",
        "docker_bash_setup_script",
        "monitor_metrics",
        "monitor_artifacts",
        "monitor_models",
        "continue_on_fail",
        "status_change_callback",
        "draft",
        "continue_behaviour",
    ),
    "PipelineController.start": (
        "step_task_created_callback",
        "step_task_completed_callback",
    ),
    "PipelineDecorator.component": (
        "continue_on_fail",
        "docker_args",
        "docker_bash_setup_script",
        "repo",
        "helper_functions",
        "monitor_metrics",
        "monitor_artifacts",
        "monitor_models",
        "pre_execute_callback",
        "post_execute_callback",
        "status_change_callback",
        "draft",
        "continue_behaviour",
    ),
    "PipelineDecorator.pipeline": (
        "multi_instance_support",
        "args_map",
        "docker",
        "docker_args",
        "docker_bash_setup_script",
        "repo",
        "artifact_serialization_function",
        "artifact_deserialization_function",
    ),
}


def _no(call: str, given: Mapping[str, Any]) -> None:
    """Refuse the ClearML arguments of ``call`` that trainyard does not carry (``REFUSED``), naming them."""
    used = [key for key in REFUSED[call] if given[key] not in (None, False, (), [], {})]
    if used:
        raise unsupported(f"{call}({', '.join(sorted(used))}=...)")
    if callable(given.get("retry_on_failure")):
        raise unsupported(f"{call}(retry_on_failure=<callable>)")


class PipelineController(metaclass=Refusing):
    """ClearML's PipelineController; see the module docstring."""

    Node = Node

    def __init__(
        self,
        name: str,
        project: str,
        version: str | None = None,
        pool_frequency: float = 0.2,
        add_pipeline_tags: bool = False,
        target_project: str | bool | None = True,
        auto_version_bump: bool | None = None,
        abort_on_failure: bool = False,
        add_run_number: bool = True,
        retry_on_failure: int | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        packages: Sequence[str] | str | bool | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        always_create_from_code: bool = True,
        artifact_serialization_function: Callable | None = None,
        artifact_deserialization_function: Callable | None = None,
        output_uri: str | bool | None = None,
        skip_global_imports: bool = False,
        working_dir: str | None = None,
        enable_local_imports: bool = True,
    ):
        _no("PipelineController", locals())
        self._task = Task.init(
            project_name=project, task_name=name, task_type=TaskTypes.controller, reuse_last_task_id=False
        )
        self._pipe = Pipeline(name, project=project, version=version or "1.0.0", abort_on_failure=abort_on_failure)
        self._retries = int(retry_on_failure or 0)
        self._function_steps: set[str] = set()
        self._nodes: dict[str, Node] = {}
        self._run = None

    # -- building ----------------------------------------------------------------------------
    def add_parameter(self, name: str, default: Any = None, description: str | None = None, param_type=None) -> None:
        """A pipeline parameter (``${pipeline.<name>}``), stored in the controller task's ``Args``
        section: on the services worker the task's value is used (edit it before enqueueing)."""
        values = {name: default}
        self._task.connect(values, name="Args")
        self._pipe.add_parameter(name, values[name], description)

    def get_parameters(self) -> dict[str, Any]:
        return dict(self._pipe.parameters)

    def set_default_execution_queue(self, default_execution_queue: str | None) -> None:
        self._pipe.set_default_queue(default_execution_queue)

    def add_step(
        self,
        name: str,
        base_task_id: str | None = None,
        parents: Sequence[str] | None = None,
        parameter_override: Mapping[str, Any] | None = None,
        configuration_overrides: Mapping[str, Any] | None = None,
        task_overrides: Mapping[str, Any] | None = None,
        execution_queue: str | None = None,
        monitor_metrics: Sequence | None = None,
        monitor_artifacts: Sequence | None = None,
        monitor_models: Sequence | None = None,
        time_limit: float | None = None,
        base_task_project: str | None = None,
        base_task_name: str | None = None,
        clone_base_task: bool = True,
        continue_on_fail: bool = False,
        pre_execute_callback: Callable | None = None,
        post_execute_callback: Callable | None = None,
        cache_executed_step: bool = False,
        base_task_factory: Callable | None = None,
        retry_on_failure: int | None = None,
        status_change_callback: Callable | None = None,
        recursively_parse_parameters: bool = False,
        output_uri: str | bool | None = None,
        continue_behaviour: dict | None = None,
        stage: str | None = None,
    ) -> bool:
        """A step that clones a template task (``base_task_id``, or ``base_task_project`` +
        ``base_task_name``, looked up now), overrides its ``Section/name`` parameters and enqueues it."""
        _no("PipelineController.add_step", locals())
        if base_task_id:
            base = NativeTask.get(str(base_task_id))
        elif base_task_name:
            base = NativeTask.get_task(project=base_task_project or self._pipe.project, name=base_task_name)
        else:
            raise InvalidInput(f"step {name!r} needs base_task_id, or base_task_project and base_task_name")
        for key in parameter_override or {}:
            if "/" not in key:
                raise InvalidInput(f"step {name!r}: parameter_override key {key!r} must be 'Section/name'")
        self._pipe.add_step(
            name,
            base_task=base.id,
            parents=list(parents or ()),
            parameter_override=dict(parameter_override or {}),
            configuration_overrides=dict(configuration_overrides or {}),
            queue=execution_queue,
            cache=cache_executed_step,
            retries=int(retry_on_failure if retry_on_failure is not None else (self._retries or 0)),
            time_limit=time_limit,
            pre_callback=self._callback("pre", name, pre_execute_callback),
            post_callback=self._callback("post", name, post_execute_callback),
        )
        self._nodes[name] = Node(
            name=name,
            base_task_id=base.id,
            queue=execution_queue,
            parents=list(parents or ()),
            timeout=time_limit,
            parameters=dict(parameter_override or {}),
            job_type=base.data.type.value,
            cache_executed_step=cache_executed_step,
        )
        return True

    def add_function_step(
        self,
        name: str,
        function: Callable,
        function_kwargs: Mapping[str, Any] | None = None,
        function_return: Sequence[str] | None = None,
        project_name: str | None = None,
        task_name: str | None = None,
        task_type: str | None = None,
        auto_connect_frameworks: Any = None,
        auto_connect_arg_parser: Any = None,
        packages: Sequence[str] | str | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        helper_functions: Sequence[Callable] | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        parents: Sequence[str] | None = None,
        execution_queue: str | None = None,
        monitor_metrics: Sequence | None = None,
        monitor_artifacts: Sequence | None = None,
        monitor_models: Sequence | None = None,
        time_limit: float | None = None,
        continue_on_fail: bool = False,
        pre_execute_callback: Callable | None = None,
        post_execute_callback: Callable | None = None,
        cache_executed_step: bool = False,
        retry_on_failure: int | None = None,
        status_change_callback: Callable | None = None,
        tags: Sequence[str] | None = None,
        output_uri: str | bool | None = None,
        draft: bool = False,
        working_dir: str | None = None,
        continue_behaviour: dict | None = None,
        stage: str | None = None,
    ) -> bool:
        """A step that runs ``function(**function_kwargs)`` as a task. ``'${step.<return>}'`` passes
        another function step's return value (DataFrames and arrays included, through safe artifacts);
        ``function_return`` names the values it returns."""
        _no("PipelineController.add_function_step", locals())
        kwargs, override = self._split_kwargs(name, dict(function_kwargs or {}))
        if isinstance(packages, str):
            packages = [line for line in packages.splitlines() if line.strip()]
        self._pipe.add_function_step(
            name,
            function,
            kwargs=kwargs,
            returns=list(function_return or ()),
            parents=list(parents or ()),
            queue=execution_queue,
            cache=cache_executed_step,
            retries=int(retry_on_failure if retry_on_failure is not None else (self._retries or 0)),
            time_limit=time_limit,
            requirements=list(packages or ()),
            pre_callback=self._callback("pre", name, pre_execute_callback),
            post_callback=self._callback("post", name, post_execute_callback),
            docker_image=docker,
            parameter_override=override,
            runner=RUNNER,
        )
        self._function_steps.add(name)
        self._nodes[name] = Node(
            name=name,
            queue=execution_queue,
            parents=list(parents or ()),
            timeout=time_limit,
            parameters={**{f"kwargs/{k}": v for k, v in kwargs.items()}, **override},
            job_type=str(task_type or TaskTypes.data_processing),
            cache_executed_step=cache_executed_step,
        )
        return True

    def _split_kwargs(self, step: str, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """JSON arguments, and ``kwargs_artifacts/<arg>`` overrides for other steps' return values."""
        kwargs: dict[str, Any] = {}
        override: dict[str, Any] = {}
        for key, value in given.items():
            match = _RETURN_REF.match(value) if isinstance(value, str) else None
            if match and match.group(1) in self._function_steps and match.group(2) not in _NOT_RETURNS:
                override[f"{ARTIFACT_SECTION}/{key}"] = f"${{{match.group(1)}.artifacts.{match.group(2)}.url}}"
            elif _is_json(value):
                kwargs[key] = value
            else:
                raise unsupported(
                    f"PipelineController.add_function_step(function_kwargs={{{key!r}: <{type(value).__name__}>}}) "
                    "(pass JSON values, or another step's return value as '${step.name}')"
                )
        return kwargs, override

    def _callback(self, kind: str, step: str, fn: Callable | None) -> str | None:
        """Register a ClearML-signature callback under a name of its own (the controller is this
        same script wherever it runs, so the function itself is always at hand)."""
        if fn is None:
            return None
        key = f"clearml:{kind}:{step}"

        def pre(controller, name, spec):
            resolver = Resolver(
                controller.run.parameters, lambda n: controller.store.get(controller.run.state[n].task_id)
            )
            given = {**{f"kwargs/{k}": v for k, v in spec.kwargs.items()}, **spec.parameter_override}
            overrides = resolver.resolve(given)
            return fn(self, self._node(name, controller), overrides) is not False

        def post(controller, name, spec):
            fn(self, self._node(name, controller))

        self._pipe.callbacks[key] = pre if kind == "pre" else post
        return key

    def _node(self, name: str, controller=None) -> Node:
        node = self._nodes[name]
        run = controller.run if controller is not None else self._run
        if run is not None and name in run.state:
            state = run.state[name]
            node.executed = state.task_id if state.status in ("completed", "cached") else None
            node.status = state.status
        return node

    # -- running -----------------------------------------------------------------------------
    def start(
        self,
        queue: str = "services",
        step_task_created_callback: Callable | None = None,
        step_task_completed_callback: Callable | None = None,
        wait: bool = True,
    ) -> bool:
        """Locally: check the pipeline, then enqueue this script on ``queue`` as the controller task
        and exit. On the services worker: run the pipeline to its end."""
        _no("PipelineController.start", locals())
        if clearml_task._inside_worker():
            self._execute(run_steps_locally=False)
            return True
        self._pipe.validate()
        Queue.get(queue)
        self._task.execute_remotely(queue_name=queue, exit_process=True)
        return True

    def start_locally(self, run_pipeline_steps_locally: bool = False) -> None:
        """Run the controller here; the steps on their queues, or here with ``run_pipeline_steps_locally``."""
        self._execute(run_steps_locally=run_pipeline_steps_locally)

    def _execute(self, run_steps_locally: bool) -> None:
        self._run = self._pipe.start_in_task(self._task.id, run_steps_locally=run_steps_locally)
        if self._run.status != "completed":
            message = f"pipeline {self._pipe.name!r} {self._run.status}: {self._run.message or 'no reason given'}"
            clearml_task.mark_failed(message)

    def wait(self, timeout: float | None = None) -> bool:
        """The pipeline ran to its end in ``start``/``start_locally``: nothing is left to wait for."""
        return self._run is not None

    def stop(self, timeout: float | None = None, mark_failed: bool = False, mark_aborted: bool = False) -> None:
        if self._pipe.run_id is not None and self._run is None:
            self._pipe.stop()

    def is_running(self) -> bool:
        return self._pipe.run_id is not None and self._pipe.run.status == "running"

    def is_successful(self, fail_on_step_fail: bool = True, fail_condition: str = "all") -> bool:
        """True when the run completed (cached steps count as success, unlike ClearML #1501)."""
        return self._pipe.run_id is not None and self._pipe.run.status == "completed"

    def get_pipeline_dag(self) -> dict[str, Node]:
        return {name: self._node(name) for name in self._nodes}

    def get_processed_nodes(self) -> list[Node]:
        return [n for n in self.get_pipeline_dag().values() if n.status in ("completed", "cached", "failed", "aborted")]

    def get_running_nodes(self) -> list[Node]:
        return [n for n in self.get_pipeline_dag().values() if n.status in ("queued", "running")]

    @property
    def id(self) -> str:
        return self._task.id

    def __getattr__(self, name: str):
        refuse_unknown("PipelineController", name)


# -- PipelineDecorator ---------------------------------------------------------------------------
class _Active:
    """The decorator pipeline this process is running (its open trainyard run)."""

    def __init__(self, pipe: Pipeline | None, open_run: Any, debug: bool):
        self.pipe = pipe
        self.open_run = open_run
        self.debug = debug
        self.counts: dict[str, int] = {}

    def step_name(self, base: str) -> str:
        """``name``, then ``name_1``, ``name_2``... for later calls (ClearML's naming)."""
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


_active: _Active | None = None


class LazyValue:
    """A component's return value: fetched (the step waited for, its artifact read back) the
    moment the pipeline logic uses it; passed to another component, it travels as a reference."""

    def __init__(self, step: str, name: str):
        object.__setattr__(self, "_step", step)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_cache", [])

    def _value(self) -> Any:
        cache = object.__getattribute__(self, "_cache")
        if cache:
            return cache[0]
        step, name = object.__getattribute__(self, "_step"), object.__getattribute__(self, "_name")
        if _active is None or _active.open_run is None:
            raise InvalidInput(f"the value {name!r} of step {step!r} is used after its pipeline ended")
        state = _active.open_run.wait_step(step)
        if state.status not in ("completed", "cached"):
            raise ValueError(
                f"pipeline step {step!r} {state.status}: {state.error or state.message or 'no reason given'}"
            )
        from ..task import Artifact

        record = NativeTask.get(state.task_id)
        if name not in record.artifacts:
            raise InvalidInput(f"pipeline step {step!r} stored no return value {name!r}")
        value = Artifact(record.artifacts[name]).get()
        cache.append(value)
        return value

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._value(), attr)

    def __repr__(self) -> str:
        return repr(self._value())

    def __str__(self) -> str:
        return str(self._value())

    def __format__(self, spec: str) -> str:
        return format(self._value(), spec)

    def __bool__(self) -> bool:
        return bool(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __iter__(self):
        return iter(self._value())

    def __getitem__(self, key: Any) -> Any:
        return self._value()[key]

    def __float__(self) -> float:
        return float(self._value())

    def __int__(self) -> int:
        return int(self._value())

    def __hash__(self) -> int:
        return id(self)


def _binary(op: Callable, reflected: bool) -> Callable:
    def method(self, other):
        other = other._value() if isinstance(other, LazyValue) else other
        return op(other, self._value()) if reflected else op(self._value(), other)

    return method


def _unary(op: Callable) -> Callable:
    return lambda self: op(self._value())


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul"):
    setattr(LazyValue, f"__{_op}__", _binary(getattr(operator, _op), False))
    setattr(LazyValue, f"__r{_op}__", _binary(getattr(operator, _op), True))
for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    setattr(LazyValue, f"__{_op}__", _binary(getattr(operator, _op), False))
for _op in ("neg", "pos", "abs"):
    setattr(LazyValue, f"__{_op}__", _unary(getattr(operator, _op)))


class _Component:
    """A function decorated with ``PipelineDecorator.component``."""

    def __init__(self, func: Callable, options: dict[str, Any]):
        self.func = func
        self.options = options
        self.__wrapped__ = func
        self.__name__ = func.__name__
        self.__doc__ = func.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _active is None or _active.debug:  # outside a pipeline, or debug_pipeline(): a plain call
            return self.func(*[_plain(a) for a in args], **{k: _plain(v) for k, v in kwargs.items()})
        options = self.options
        bound = inspect.signature(self.func).bind(*args, **kwargs)
        step = _active.step_name(options.get("name") or self.func.__name__)
        arguments: dict[str, Any] = {}
        override: dict[str, Any] = {}
        for key, value in bound.arguments.items():
            if isinstance(value, LazyValue):
                source = object.__getattribute__(value, "_step")
                ret = object.__getattribute__(value, "_name")
                override[f"{ARTIFACT_SECTION}/{key}"] = f"${{{source}.artifacts.{ret}.url}}"
            elif _is_json(value):
                arguments[key] = value
            else:
                raise unsupported(
                    f"PipelineDecorator component argument {key}=<{type(value).__name__}> "
                    "(pass JSON values, or other components' results)"
                )
        returns = list(options["return_values"])
        packages = options.get("packages")
        if isinstance(packages, str):
            packages = [line for line in packages.splitlines() if line.strip()]
        _active.pipe.add_function_step(
            step,
            self.func,
            kwargs=arguments,
            returns=returns,
            parents=list(options.get("parents") or ()),
            queue=options.get("execution_queue"),
            cache=bool(options.get("cache")),
            retries=int(options.get("retry_on_failure") or 0),
            requirements=list(packages or ()),
            docker_image=options.get("docker"),
            parameter_override=override,
            runner=RUNNER,
        )
        _active.open_run.add_step(step)
        values = tuple(LazyValue(step, name) for name in returns)
        return values[0] if len(values) == 1 else values


def _plain(value: Any) -> Any:
    return value._value() if isinstance(value, LazyValue) else value


class PipelineDecorator(metaclass=Refusing):
    """ClearML's PipelineDecorator over trainyard's Pipeline: the pipeline function runs as the
    controller task; each component call adds a step to the running trainyard run at once, and its
    result is fetched only when the logic uses it."""

    _default_queue: str | None = None
    _mode: str = "remote"  # remote | local (run_locally) | debug (debug_pipeline)

    @classmethod
    def component(
        cls,
        _func: Callable | None = None,
        *,
        return_values: Sequence[str] = ("return_object",),
        name: str | None = None,
        cache: bool = False,
        packages: Sequence[str] | str | None = None,
        parents: Sequence[str] | None = None,
        execution_queue: str | None = None,
        continue_on_fail: bool = False,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        task_type: str | None = None,
        auto_connect_frameworks: Any = None,
        auto_connect_arg_parser: Any = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        helper_functions: Sequence[Callable] | None = None,
        monitor_metrics: Sequence | None = None,
        monitor_artifacts: Sequence | None = None,
        monitor_models: Sequence | None = None,
        retry_on_failure: int | None = None,
        pre_execute_callback: Callable | None = None,
        post_execute_callback: Callable | None = None,
        status_change_callback: Callable | None = None,
        tags: Sequence[str] | None = None,
        output_uri: str | bool | None = None,
        draft: bool = False,
        working_dir: str | None = None,
        continue_behaviour: dict | None = None,
        stage: str | None = None,
    ):
        """Make a function a pipeline step (a task of its own when the pipeline calls it)."""
        _no("PipelineDecorator.component", locals())
        options = {
            "return_values": [return_values] if isinstance(return_values, str) else list(return_values or ()),
            "name": name,
            "cache": cache,
            "packages": packages,
            "parents": parents,
            "execution_queue": execution_queue,
            "docker": docker,
            "retry_on_failure": retry_on_failure,
        }

        def decorate(func: Callable) -> _Component:
            return _Component(func, options)

        return decorate(_func) if _func is not None else decorate

    @classmethod
    def pipeline(
        cls,
        _func: Callable | None = None,
        *,
        name: str,
        project: str,
        version: str | None = None,
        return_value: str | None = None,
        default_queue: str | None = None,
        pool_frequency: float = 0.2,
        add_pipeline_tags: bool = False,
        target_project: str | None = None,
        abort_on_failure: bool = False,
        pipeline_execution_queue: str | None = "services",
        multi_instance_support: bool = False,
        add_run_number: bool = True,
        args_map: dict | None = None,
        start_controller_locally: bool = False,
        retry_on_failure: int | None = None,
        docker: str | None = None,
        docker_args: str | None = None,
        docker_bash_setup_script: str | None = None,
        packages: Sequence[str] | str | None = None,
        repo: str | None = None,
        repo_branch: str | None = None,
        repo_commit: str | None = None,
        artifact_serialization_function: Callable | None = None,
        artifact_deserialization_function: Callable | None = None,
        output_uri: str | bool | None = None,
        skip_global_imports: bool = False,
        working_dir: str | None = None,
        enable_local_imports: bool = True,
    ):
        """Make a function the pipeline's logic; its arguments are the pipeline's parameters."""
        _no("PipelineDecorator.pipeline", locals())
        settings = {
            "name": name,
            "project": project,
            "version": version or "1.0.0",
            "return_value": return_value,
            "default_queue": default_queue,
            "abort_on_failure": abort_on_failure,
            "queue": pipeline_execution_queue,
            "controller_here": start_controller_locally or pipeline_execution_queue is None,
        }

        def decorate(func: Callable) -> Callable:
            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                return cls._run_pipeline(func, settings, args, kwargs)

            return run

        return decorate(_func) if _func is not None else decorate

    @classmethod
    def run_locally(cls) -> None:
        """The controller and the steps run here (steps as tasks, on an in-process worker)."""
        cls._mode = "local"

    @classmethod
    def debug_pipeline(cls) -> None:
        """The pipeline logic calls the component functions directly: no tasks at all."""
        cls._mode = "debug"

    @classmethod
    def set_default_execution_queue(cls, default_execution_queue: str | None) -> None:
        cls._default_queue = default_execution_queue

    @classmethod
    def _run_pipeline(cls, func: Callable, settings: dict, args: tuple, kwargs: dict) -> Any:
        global _active
        if cls._mode == "debug":
            _active = _Active(None, None, debug=True)
            try:
                return func(*args, **kwargs)
            finally:
                _active = None
        bound = inspect.signature(func).bind(*args, **kwargs)
        bound.apply_defaults()
        parameters = dict(bound.arguments)
        task = Task.init(
            project_name=settings["project"],
            task_name=settings["name"],
            task_type=TaskTypes.controller,
            reuse_last_task_id=False,  # as ClearML's pipelines: each run is a new controller task
        )
        task.connect(parameters, name="Args")  # on the services worker: the task's values
        local_steps = cls._mode == "local"
        if not (local_steps or settings["controller_here"] or clearml_task._inside_worker()):
            Queue.get(settings["queue"])
            task.execute_remotely(queue_name=settings["queue"], exit_process=True)
        pipe = Pipeline(
            settings["name"],
            project=settings["project"],
            version=settings["version"],
            default_queue=cls._default_queue or settings["default_queue"],
            abort_on_failure=settings["abort_on_failure"],
        )
        for key, value in parameters.items():
            pipe.add_parameter(key, value)
        open_run = pipe.open_in_task(task.id, run_steps_locally=local_steps)
        _active = _Active(pipe, open_run, debug=False)
        try:
            result = func(**parameters)
        except BaseException:
            _active = None
            open_run.controller.stop_event.set()
            open_run.close()
            raise
        try:
            if settings["return_value"] is not None:
                task.upload_artifact(settings["return_value"], _plain(result))
            run = open_run.close()
        finally:
            _active = None
        if run.status != "completed":
            clearml_task.mark_failed(f"pipeline {settings['name']!r} {run.status}: {run.message or 'no reason given'}")
        return result
