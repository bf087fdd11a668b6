"""Parsers of user and task input, fuzzed: they return a value or fail with trainyard's clear error
(InvalidInput / ValueError with a message), never with anything else (a crash, a RecursionError...)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainyard import InvalidInput
from trainyard.controller.refs import find_references
from trainyard.queues.params import check_parameters, parse_assignment
from trainyard.queues.record import TaskRecord
from trainyard.worker.runfolder import EventReader, parse_event_line, validate_event

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
anything = json_values | st.binary(max_size=10) | st.tuples(st.integers()) | st.sets(st.integers(), max_size=3)
# text that looks like what the parsers expect, with hostile pieces mixed in
pieces = st.sampled_from(
    ["Args/", "lr", "=", "[", "]", "{", "}", '"', "null", "NaN", "Infinity", "-1e999", "1", ",", ":", "/", " ", "\n",
     "\x00", "${", "}", ".", "$(touch x)", "`id`", ";", "&&", "|", "'", "\\", "🚀", "\ud800"]
)  # fmt: skip
structured_text = st.lists(pieces, max_size=30).map("".join) | st.text(max_size=60)


def _clear(exc: BaseException) -> None:
    assert isinstance(exc, (InvalidInput, ValueError)), f"{type(exc).__name__}: {exc}"
    assert str(exc).strip(), "an error without a message"


@FUZZ
@given(structured_text)
def test_cli_parameter_assignments(text):
    try:
        key, value = parse_assignment(text)
    except Exception as exc:  # noqa: BLE001 - the point is which kinds escape
        _clear(exc)
        return
    assert "/" in key
    json.dumps(value, allow_nan=False)  # whatever is accepted is plain JSON


def test_deeply_nested_json_in_a_parameter_is_refused_clearly():
    with pytest.raises(InvalidInput, match="Args/x"):
        parse_assignment("Args/x=" + "[" * 100_000 + "]" * 100_000)


@FUZZ
@given(st.dictionaries(st.text(max_size=12) | st.integers(), anything, max_size=5))
def test_parameter_mappings(params):
    try:
        checked = check_parameters(params)
    except Exception as exc:  # noqa: BLE001
        _clear(exc)
        return
    json.dumps(checked, allow_nan=False)
    TaskRecord(id="t", name="n", parameters=checked).to_json()  # what is accepted can be stored


event_objects = st.fixed_dictionaries(
    {"kind": st.sampled_from(["metric", "output", "artifact", "parameters", "other", 3])},
    optional={
        "title": anything,
        "series": anything,
        "value": anything,
        "step": anything,
        "ts": anything,
        "name": anything | st.sampled_from(["ok", "../x", "a/b", ".", ""]),
        "path": anything | st.sampled_from(["artifacts/ok/f", "artifacts/ok/../../etc/passwd", "/etc/passwd"]),
        "metadata": anything,
        "values": anything,
    },
)


@FUZZ
@given(event_objects | anything)
def test_event_lines(event):
    try:
        line = json.dumps(event).encode()
    except (TypeError, ValueError):
        line = repr(event).encode()
    for candidate in (line, line[: len(line) // 2], b"\xff" + line):
        try:
            parsed = parse_event_line(candidate)
        except Exception as exc:  # noqa: BLE001
            _clear(exc)
            continue
        assert validate_event(parsed) == parsed or parsed["kind"] == "metric"
        if parsed["kind"] == "artifact":
            assert ".." not in parsed["path"].split("/") and not parsed["path"].startswith("/")


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_event_file_reader_never_raises(tmp_path_factory, chunks):
    folder = tmp_path_factory.mktemp("events")
    reader = EventReader(folder, max_line_bytes=64)
    with open(folder / "events.jsonl", "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
            reader.poll_with_errors()
    events, errors = reader.poll_with_errors(final=True)
    assert all(isinstance(e, str) and e.startswith(("line ", "events.jsonl")) for e in errors)


@FUZZ
@given(st.binary(max_size=300) | structured_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_task_records_from_redis(raw):
    try:
        TaskRecord.from_json(raw)
    except Exception as exc:  # noqa: BLE001
        _clear(exc)


@FUZZ
@given(json_values | structured_text)
def test_pipeline_references(value):
    try:
        list(find_references(value))
    except Exception as exc:  # noqa: BLE001
        _clear(exc)
