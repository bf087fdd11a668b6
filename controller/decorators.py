"""Decorators: ``@component`` functions called inside a ``@pipeline`` function build the DAG.

    @component(returns=["rows"], cache=True)
    def count(n: int) -> int: ...

    @pipeline(name="fan-out", project="demo", default_queue="cpu")
    def fan_out(n: int = 3):
        totals = [count(n=i) for i in range(n)]      # fan-out in a plain Python loop
        report(values=totals)

    fan_out.run_locally(n=4)        # controller and steps in this process (steps as subprocess tasks)
    fan_out.debug(n=4)              # plain in-process function calls, no tasks
    fan_out.start(queue="services", n=4)

Calling a component while the pipeline is being built returns a placeholder that other
components accept (it becomes a ``${step.return}`` reference and a dependency); its value is
only known when the pipeline runs, so using it in Python logic (``if``, arithmetic) is refused
with a clear message. Outside a pipeline, a component is a plain function.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ..queues.errors import InvalidInput
from ..queues.options import ExecutionOptions
from .model import PipelineRun
from .pipeline import Pipeline

_building: contextvars.ContextVar[_Builder | None] = contextvars.ContextVar("trainyard_pipeline", default=None)


class StepOutput:
    """A value a step will produce; pass it to another component."""

    def __init__(self, step: str, name: str | None):
        self.step, self.name = step, name

    @property
    def reference(self) -> str:
        return "${" + f"{self.step}.{self.name}" + "}" if self.name else "${" + f"{self.step}.id" + "}"

    def _unknown(self, *_args, **_kwargs):
        raise InvalidInput(
            f"the value of {self.reference} is only known when the pipeline runs: pass it to another "
            "component instead of using it in the pipeline function (or use .debug() to run it inline)"
        )

    __hash__ = object.__hash__  # (``__eq__`` is one of the refused uses below)

    def __getattr__(self, name: str):
        if name.startswith("_"):  # copy, pickle and friends probe for dunders: those stay missing
            raise AttributeError(name)
        self._unknown()

    def __repr__(self) -> str:
        return f"<StepOutput {self.reference}>"


# Every use of a StepOutput as a value — conversions, arithmetic on either side, comparisons,
# indexing, printing — raises the designed message instead of Python's generic TypeError.
_BINARY = ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "divmod", "pow", "lshift", "rshift")
_UNARY = ("bool", "int", "float", "complex", "index", "iter", "len", "round", "trunc", "floor", "ceil")
_OTHER = ("neg", "pos", "abs", "invert", "lt", "gt", "le", "ge", "eq", "ne", "getitem", "setitem", "contains")
_VALUE_USES = (
    *(f"__{prefix}{op}__" for op in (*_BINARY, "and", "or", "xor") for prefix in ("", "r", "i")),
    *(f"__{op}__" for op in (*_UNARY, *_OTHER, "call", "str", "format", "bytes")),
)
for _name in _VALUE_USES:
    setattr(StepOutput, _name, StepOutput._unknown)


class _Builder:
    def __init__(self, pipe: Pipeline | None, debug: bool):
        self.pipe, self.debug = pipe, debug
        self.counts: dict[str, int] = {}

    def unique(self, name: str) -> str:
        n = self.counts.get(name, 0)
        self.counts[name] = n + 1
        return name if n == 0 else f"{name}_{n}"


def _to_reference(value: Any, parents: set[str]) -> Any:
    if isinstance(value, StepOutput):
        parents.add(value.step)
        return value.reference
    if isinstance(value, (list, tuple)):
        return [_to_reference(v, parents) for v in value]
    if isinstance(value, dict):
        return {k: _to_reference(v, parents) for k, v in value.items()}
    return value


class Component:
    def __init__(self, func: Callable, returns: Sequence[str], name: str | None, options: dict[str, Any]):
        self.func, self.returns, self.name, self.options = func, list(returns), name or func.__name__, options
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _building.get()
        if builder is None or builder.debug:
            return self.func(*args, **kwargs)
        bound = inspect.signature(self.func).bind(*args, **kwargs)
        bound.apply_defaults()
        parents: set[str] = set()
        arguments = {k: _to_reference(v, parents) for k, v in bound.arguments.items()}
        step = builder.unique(self.name)
        builder.pipe.add_function_step(
            step, self.func, kwargs=arguments, returns=self.returns, parents=sorted(parents), **self.options
        )
        outputs = tuple(StepOutput(step, r) for r in self.returns)
        if not outputs:
            return StepOutput(step, None)
        return outputs[0] if len(outputs) == 1 else outputs


def component(
    _func: Callable | None = None,
    *,
    returns: Sequence[str] = (),
    name: str | None = None,
    cache: bool = False,
    queue: str | None = None,
    **execution: Any,
):
    """Mark a function as a pipeline step (a task when the pipeline runs); ``execution`` holds
    execution options (``queues/options.py``: retries, time_limit, requirements, mode, ...)."""
    checked = ExecutionOptions.of(execution, "execution option of @component:")
    options = {"cache": cache, "queue": queue, **checked.given()}

    def wrap(func: Callable) -> Component:
        return Component(func, returns, name, options)

    return wrap(_func) if _func is not None else wrap


class PipelineFunction:
    def __init__(
        self, func: Callable, name: str, project: str, version: str, default_queue: str | None, abort_on_failure: bool
    ):
        self.func, self.name, self.project, self.version = func, name, project, version
        self.default_queue, self.abort_on_failure = default_queue, abort_on_failure
        functools.update_wrapper(self, func)

    def build(self, *args: Any, **kwargs: Any) -> Pipeline:
        """The pipeline (DAG) this function describes for these arguments (recorded as its parameters)."""
        pipe = Pipeline(self.name, self.project, self.version, self.default_queue, self.abort_on_failure)
        bound = inspect.signature(self.func).bind(*args, **kwargs)
        bound.apply_defaults()
        for key, value in bound.arguments.items():
            pipe.add_parameter(key, value)
        # the arguments are real values: the graph may depend on them (a loop over ``range(n)``)
        token = _building.set(_Builder(pipe, debug=False))
        try:
            self.func(**bound.arguments)
        finally:
            _building.reset(token)
        return pipe

    def start(self, *args: Any, queue: str = "services", **kwargs: Any) -> Pipeline:
        pipe = self.build(*args, **kwargs)
        pipe.start(queue=queue)
        return pipe

    def run_locally(self, *args: Any, **kwargs: Any) -> PipelineRun:
        """Controller and steps in this process (steps are real tasks on an in-process worker)."""
        return self.build(*args, **kwargs).start_locally(run_steps_locally=True)

    def debug(self, *args: Any, **kwargs: Any) -> Any:
        """Plain in-process calls, no tasks: the quickest way to step through the logic."""
        token = _building.set(_Builder(None, debug=True))
        try:
            return self.func(*args, **kwargs)
        finally:
            _building.reset(token)

    def __call__(self, *args: Any, **kwargs: Any) -> Pipeline:
        return self.start(*args, **kwargs)


def pipeline(
    name: str,
    project: str = "default",
    version: str = "1.0.0",
    default_queue: str | None = None,
    abort_on_failure: bool = True,
):
    """Mark a function as a pipeline: its arguments are the pipeline's parameters."""

    def wrap(func: Callable) -> PipelineFunction:
        return PipelineFunction(func, name, project, version, default_queue, abort_on_failure)

    return wrap
