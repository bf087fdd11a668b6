"""Typed parameters: keys, values and their round trip through clone and the CLI."""

from __future__ import annotations

import json

import pytest

from trainyard import InvalidInput, Task
from trainyard.queues.params import normalize_key, parse_assignment

TYPED = {
    "Args/epochs": 10,
    "Args/lr": 0.001,
    "Args/amp": True,
    "Args/layers": [64, 128, 256],
    "Args/sched": {"name": "cosine", "warmup": 5, "nested": [1.5, None]},
    "Args/resume": None,
    "Args/tag": "v1",
    "General/zero": 0,
    "General/empty": "",
}


def test_keys_without_section_go_to_general():
    assert normalize_key("lr") == "General/lr"
    assert normalize_key("Args/lr") == "Args/lr"
    assert normalize_key("Args/nested/name") == "Args/nested/name"


@pytest.mark.parametrize("bad", ["", " ", "/lr", "Args/", "1bad/x", "Args/ lr", "a b/c"])
def test_malformed_keys_are_refused(bad):
    with pytest.raises(InvalidInput, match="malformed parameter key"):
        normalize_key(bad)


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("Args/lr=0.1", "Args/lr", 0.1),
        ("Args/epochs=3", "Args/epochs", 3),
        ("amp=true", "General/amp", True),
        ("x=null", "General/x", None),
        ("x=[1, 2]", "General/x", [1, 2]),
        ('x={"a": 1}', "General/x", {"a": 1}),
        ('x="3"', "General/x", "3"),
        ("x=hello world", "General/x", "hello world"),
        ("x=", "General/x", ""),
        ("x=a=b", "General/x", "a=b"),
    ],
)
def test_cli_assignments_parse_as_json_else_text(text, key, value):
    assert parse_assignment(text) == (key, value)
    assert type(parse_assignment(text)[1]) is type(value)


@pytest.mark.parametrize("bad", ["noequals", "=3", "x=NaN", "x=Infinity"])
def test_malformed_assignments_are_refused(bad):
    with pytest.raises(InvalidInput):
        parse_assignment(bad)


def test_non_json_values_are_refused():
    with pytest.raises(InvalidInput, match="not JSON"):
        Task.create("t", command=["true"], parameters={"x": object()})
    with pytest.raises(InvalidInput, match="finite"):
        Task.create("t", command=["true"], parameters={"x": float("nan")})
    assert Task.list() == []  # nothing half-written


def test_types_survive_create_get_and_clone():
    task = Task.create("typed", command=["true"], parameters=TYPED)
    fetched = Task.get(task.id)
    assert fetched.get_parameters() == TYPED
    clone = fetched.clone(name="typed-2", parameters={"Args/lr": 0.01})
    again = Task.get(clone.id).get_parameters()
    assert again == {**TYPED, "Args/lr": 0.01}
    for key, value in TYPED.items():
        assert type(again[key]) is type(value), key
    assert isinstance(again["Args/epochs"], int) and not isinstance(again["Args/epochs"], bool)


def test_types_survive_the_cli(run_cli):
    args = [f"{k}={json.dumps(v)}" for k, v in TYPED.items()]
    created = run_cli(
        "task", "create", "--name", "cli-typed", *sum((["-p", a] for a in args), []), "--", "true", check=True
    )
    task_id = created.stdout.strip()
    cloned = run_cli("task", "clone", task_id, "-p", "Args/epochs=20", "-p", "Args/amp=false", check=True)
    clone_id = cloned.stdout.strip()
    run_cli("task", "set", clone_id, "Args/layers=[1]", "General/new=1.5", check=True)
    shown = json.loads(run_cli("task", "show", clone_id, "--json", check=True).stdout)
    assert shown["parameters"] == {
        **TYPED,
        "Args/epochs": 20,
        "Args/amp": False,
        "Args/layers": [1],
        "General/new": 1.5,
    }
    assert shown["parent"] == task_id


def test_set_update_and_delete_parameters():
    task = Task.create("p", command=["true"], parameters={"a": 1, "b": 2})
    task.update_parameters({"b": 3}, c=[1])
    assert Task.get(task.id).get_parameters() == {"General/a": 1, "General/b": 3, "General/c": [1]}
    task.set_parameters({"Args/x": "y"})
    assert Task.get(task.id).get_parameters() == {"Args/x": "y"}
    task.set_parameter("Args/n", 5).delete_parameter("Args/x")
    assert Task.get(task.id).get_parameters() == {"Args/n": 5}
    assert task.get_parameter("Args/n") == 5 and task.get_parameter("missing", "d") == "d"
