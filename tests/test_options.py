"""One options model: execution options are defined once (queues/options.py) and every front takes them."""

from __future__ import annotations

import pytest

from trainyard import Pipeline, component
from trainyard.controller.model import StepSpec
from trainyard.queues.errors import InvalidInput
from trainyard.queues.options import ExecutionOptions
from trainyard.queues.record import TaskRecord
from trainyard.web.api_tasks import CreateTask


def _double(x: int) -> int:
    return 2 * x


def test_every_front_takes_the_same_options():
    names = set(ExecutionOptions.names())
    assert names <= set(StepSpec.model_fields) and names <= set(CreateTask.model_fields)
    pipe = Pipeline("opts")
    pipe.add_step("a", base_task="p/t", gpus=2, env={"A": "1"}, memory="2g", retries=1)
    pipe.add_function_step("b", _double, kwargs={"x": 1}, time_limit=30, requirements=["six"], docker_image="py:3")
    assert pipe.steps["a"].execution_options().given() == {"gpus": 2, "env": {"A": "1"}, "memory": "2g", "retries": 1}
    assert pipe.steps["b"].execution_options().given() == {
        "requirements": ["six"],
        "time_limit": 30.0,
        "docker_image": "py:3",
    }
    assert component(_double, mode="venv").options["mode"] == "venv"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: Pipeline("x").add_step("a", base_task="p/t", gpu=1),
            "unknown execution option of step 'a': gpu \\(known: mode, ",
        ),
        (lambda: component(_double, retry=2), "unknown execution option of @component: retry"),
        (lambda: ExecutionOptions.of({"memory": "lots"}), "memory 'lots' is not a size"),
        (lambda: ExecutionOptions.of({"gpus": -1}), "invalid value: gpus"),
    ],
)
def test_unknown_names_and_bad_values_are_one_line(call, message):
    with pytest.raises(InvalidInput, match=message):
        call()


def test_apply_overrides_only_what_is_set():
    record = TaskRecord(
        id="t", name="n", script={"command": ["x"], "requirements": ["a"]}, execution={"env": {"K": "v"}, "retries": 3}
    )
    ExecutionOptions.of({"gpus": 1, "env": {"L": "w"}, "mode": "docker"}).apply(record)
    assert record.execution.gpus.count == 1 and record.execution.env == {"K": "v", "L": "w"}
    assert record.execution.mode == "docker" and record.execution.retries == 3 and record.script.requirements == ["a"]
    ExecutionOptions.of({"requirements": []}).apply(record)
    assert record.script.requirements == []


def test_the_cli_flags_come_from_the_model():
    from trainyard.cli.task_cmds import create_cmd

    dests = {p.name for p in create_cmd.params}
    assert set(ExecutionOptions.names()) <= dests
