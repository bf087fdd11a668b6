"""Function steps: a module-level function becomes a standalone script that a real worker runs."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import sys
import textwrap
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from gitrepo import make_repo
from workerproc import WorkerProcess, log_text

from trainyard import InvalidInput, Queue, Task, TaskStatus
from trainyard.controller.functions import (
    FunctionStepError,
    entry_point,
    function_spec,
    run_inline,
    task_for_function,
)

STEPS = textwrap.dedent(
    '''
    """Sample function steps (written by tests/test_functions.py)."""

    from __future__ import annotations

    import json
    import math

    from helpers import scale
    from trainyard import current_task
    from trainyard.queues.errors import InvalidInput

    FACTOR = 10
    OFFSET = 0.5
    UNUSED = "never referenced"


    def component(**options):
        """Stands in for a pipeline decorator."""

        def wrap(func):
            func.options = options
            return func

        return wrap


    def total(xs):
        return sum(xs) + OFFSET


    def summary(xs):
        return {"total": total(xs), "count": len(xs)}


    @component(
        cache=True,
    )
    def describe(count, ratio, items, options, nothing, flag):
        """One return value: the type of each argument."""
        values = [count, ratio, items, options, nothing, flag]
        return {"types": [type(v).__name__ for v in values], "echo": json.loads(json.dumps(values))}


    @component()
    def split(values, n=2):
        """Two return values, from the sibling module, two helpers and a constant."""
        scaled = [scale(v) * FACTOR for v in values]
        return summary(scaled[:n]), scaled[n:]


    def noted(x):
        current_task().set_output("note", f"x={x}")
        return math.sqrt(x)


    def quiet(x):
        assert x == "ignored"


    def wrong_count():
        return 1, 2, 3


    def not_json():
        return {1, 2}


    def refuse_me():
        raise InvalidInput("never called")
    '''
)
PLAIN = "import math\n\n\ndef hypot(a, b):\n    return math.hypot(a, b)\n"
MODULES = ("steps", "helpers", "geometry", "pkg", "pkg.util", "pkg.rel")


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory):
    """A git repository with the steps module, its sibling helper (changed since the commit) and a
    package using a relative import; a plain folder (no git) with one more module. All imported."""
    base = tmp_path_factory.mktemp("functions")
    repo = base / "repo"
    make_repo(
        repo,
        {
            ".gitignore": "__pycache__/\n",
            "flows/steps.py": STEPS,
            "flows/helpers.py": "def scale(x):\n    return x * 2\n",
            "pkg/__init__.py": "",
            "pkg/util.py": "def double(x):\n    return 2 * x\n",
            "pkg/rel.py": "from .util import double\n\n\ndef doubled(x):\n    return double(x)\n",
        },
    )
    (repo / "flows/helpers.py").write_text("def scale(x):\n    return x * 3\n")  # uncommitted: goes as the diff
    plain = base / "plain"
    plain.mkdir()
    (plain / "geometry.py").write_text(PLAIN)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(repo / "flows"))
        patch.syspath_prepend(str(repo))
        for name in MODULES:
            patch.delitem(sys.modules, name, raising=False)
        yield SimpleNamespace(
            repo=repo,
            steps=_load("steps", repo / "flows/steps.py"),
            geometry=_load("geometry", plain / "geometry.py"),
            rel=importlib.import_module("pkg.rel"),
        )
        for name in MODULES:
            sys.modules.pop(name, None)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _done(task: Task, conn) -> Task:
    done = Task.get(task.id)
    assert done.status == TaskStatus.COMPLETED, (done.data.runtime, log_text(conn, task.id))
    return done


# -- the generated script --------------------------------------------------------------------------


def test_source_keeps_imports_helpers_and_constants_but_not_decorators_or_trainyard(code):
    spec = function_spec(code.steps.split, returns=("summary", "rest"))
    source = spec.source
    compile(source, "split_step.py", "exec")
    lines = source.splitlines()
    assert not any(line.lstrip().startswith("@") for line in lines)
    assert "def component" not in source and "cache=True" not in source
    code_lines = [line for line in lines if line and not line.startswith("#")]
    assert code_lines[0] == "from __future__ import annotations"
    for kept in ("import json", "import math", "from helpers import scale"):
        assert kept in lines
    assert not any("trainyard.queues" in line or "InvalidInput" in line for line in lines)
    assert "FACTOR = 10" in lines and "OFFSET = 0.5" in lines and "UNUSED" not in source
    assert "def total(xs):" in lines and "def summary(xs):" in lines  # summary calls total
    assert "def describe" not in source and "def noted" not in source
    tree = ast.parse(source)
    top = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert top == ["total", "summary", "split"]
    assert source.count("from trainyard import current_task") == 1  # the stub's, inside __main__
    assert "from trainyard import current_task" in function_spec(code.steps.noted).source.split("if __name__")[0]

    assert spec.name == "split" and entry_point(spec) == "split_step.py"
    assert spec.module_file == str((code.repo / "flows/steps.py").resolve())
    assert spec.repository == str(code.repo.resolve()) and len(spec.commit) == 40
    assert spec.working_dir == "flows" and "x * 3" in spec.diff
    named = function_spec(code.steps.split, name="split-v2", requirements=["numpy>=1"])
    assert entry_point(named) == "split-v2_step.py" and named.requirements == ["numpy>=1"]


def test_plain_folder_and_package_specs(code):
    plain = function_spec(code.geometry.hypot, returns=["length"])
    assert (plain.repository, plain.commit, plain.diff, plain.working_dir) == (None, None, None, ".")
    assert "import math" in plain.source.splitlines()
    rel = function_spec(code.rel.doubled, returns=["y"])
    assert rel.working_dir == "pkg" and "from pkg.util import double" in rel.source
    assert "parents[1]" in rel.source  # the package root goes on sys.path


def test_refusals(code):
    def nested(x):
        return x

    cases = [
        (lambda x: x, "lambda"),
        (nested, "inside another function"),
        (len, "builtin"),
        (math.sqrt, "builtin"),
        (str.upper, "builtin"),
        (Task.edit, "not a module-level function"),
        (Task.create, "bound method"),
    ]
    for func, words in cases:
        with pytest.raises(InvalidInput, match=words):
            function_spec(func)
    interactive: dict = {"__name__": "__main__"}
    exec(compile("def typed_in(x):\n    return x\n", "<stdin>", "exec"), interactive)
    with pytest.raises(InvalidInput, match=r"interactively \(in __main__\) without a source file"):
        function_spec(interactive["typed_in"])
    with pytest.raises(InvalidInput, match="return names must be unique"):
        function_spec(code.steps.split, returns=("a", "a"))
    with pytest.raises(InvalidInput, match="must be a Python identifier"):
        function_spec(code.steps.split, returns=("a b",))
    with pytest.raises(InvalidInput, match="step name"):
        function_spec(code.steps.split, name="../escape")


def test_task_for_function_checks_arguments(code):
    spec = function_spec(code.steps.noted, returns=["root"])
    with pytest.raises(InvalidInput, match="argument 'x' is not JSON"):
        task_for_function(spec, "noted", "fn-tests", {"x": {1, 2}})
    with pytest.raises(InvalidInput, match="argument 'x' is not JSON"):
        task_for_function(spec, "noted", "fn-tests", {"x": float("nan")})
    with pytest.raises(InvalidInput, match="not a Python identifier"):
        task_for_function(spec, "noted", "fn-tests", {"a-b": 1})
    with pytest.raises(InvalidInput, match="come.* from the function spec"):
        task_for_function(spec, "noted", "fn-tests", {"x": 1}, command=["true"])
    task = task_for_function(spec, "noted", "fn-tests", {"x": 2}, parameters={"General/seed": 1}, tags=["fn"])
    record = Task.get(task.id).data
    assert record.parameters == {"kwargs/x": 2, "General/seed": 1} and record.tags == ["fn"]
    assert record.script.source == spec.source and record.script.entry_point == "noted_step.py"
    assert (record.script.repository, record.script.commit) == (spec.repository, spec.commit)
    assert record.script.working_dir == "flows" and record.script.diff == spec.diff
    assert task.data.script.diff == spec.diff  # the handle's cached record has it too
    assert record.status == TaskStatus.DRAFT


def test_run_inline_returns_the_dict_of_returns(code):
    assert run_inline(code.steps.split, {"values": [1, 2, 3]}, ("summary", "rest")) == {
        "summary": {"total": 90.5, "count": 2},
        "rest": [90],
    }
    assert run_inline(code.steps.noted, {"x": 9}, ["root"]) == {"root": 3.0}
    assert run_inline(code.steps.quiet, {"x": "ignored"}) == {}
    with pytest.raises(FunctionStepError, match=r"wrong_count\(\) returned 3 values, but 2 return names"):
        run_inline(code.steps.wrong_count, {}, ("a", "b"))
    with pytest.raises(FunctionStepError, match="return value 'labels' is not JSON"):
        run_inline(code.steps.not_json, {}, ["labels"])
    with pytest.raises(FunctionStepError, match="cannot take the arguments given"):
        run_inline(code.steps.noted, {"y": 1}, ["root"])


# -- a real worker runs them -----------------------------------------------------------------------


def test_worker_runs_function_steps_with_typed_arguments_and_outputs(code, conn):
    Queue.create("fn")
    arguments = {"count": 3, "ratio": 0.5, "items": [1, "a"], "options": {"k": [1]}, "nothing": None, "flag": True}
    typed = task_for_function(function_spec(code.steps.describe, returns=["report"]), "describe", "fn-tests", arguments)
    pair = task_for_function(
        function_spec(code.steps.split, returns=("summary", "rest")), "split", "fn-tests", {"values": [1, 2, 3]}
    )
    noted = task_for_function(function_spec(code.steps.noted, returns=["root"]), "noted", "fn-tests", {"x": 16})
    quiet = task_for_function(function_spec(code.steps.quiet), "quiet", "fn-tests", {"x": "ignored"})
    rel = task_for_function(function_spec(code.rel.doubled, returns=["y"]), "doubled", "fn-tests", {"x": 21})
    plain = task_for_function(
        function_spec(code.geometry.hypot, returns=["length"]),
        "hypot",
        "fn-tests",
        {"a": 3, "b": 4},
        parameters_prefix="Args",
    )
    tasks = [typed, pair, noted, quiet, rel, plain]
    for task in tasks:
        task.enqueue("fn")
    with WorkerProcess("-q", "fn", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0, worker.output()
    report = _done(typed, conn).outputs["report"]
    assert report == {
        "types": ["int", "float", "list", "dict", "NoneType", "bool"],
        "echo": [3, 0.5, [1, "a"], {"k": [1]}, None, True],
    }
    # scale() is the uncommitted x * 3: the checkout got the diff, and the sibling import worked
    assert _done(pair, conn).outputs == {"summary": {"total": 90.5, "count": 2}, "rest": [90]}
    assert _done(noted, conn).outputs == {"note": "x=16", "root": 4.0}
    assert _done(quiet, conn).outputs == {}
    assert _done(rel, conn).outputs == {"y": 42}
    assert _done(plain, conn).outputs == {"length": 5.0}


def test_worker_fails_steps_whose_returns_do_not_fit(code, conn):
    Queue.create("fn")
    count = task_for_function(function_spec(code.steps.wrong_count, returns=("a", "b")), "count", "fn-tests", {})
    not_json = task_for_function(function_spec(code.steps.not_json, returns=["labels"]), "labels", "fn-tests", {})
    missing = task_for_function(function_spec(code.steps.noted, returns=["root"]), "missing", "fn-tests", {})
    for task in (count, not_json, missing):
        task.enqueue("fn")
    with WorkerProcess("-q", "fn", "--cpu-only", "--burst") as worker:
        assert worker.wait(timeout=120) == 0, worker.output()
    expected = {
        count: "step function wrong_count() returned 3 values, but 2 return names were declared (a, b)",
        not_json: "step function not_json(): return value 'labels' is not JSON (set:",
        missing: "step function noted() cannot take the arguments given (none)",
    }
    for task, words in expected.items():
        record = Task.get(task.id).data
        assert record.status == TaskStatus.FAILED, (record.runtime, log_text(conn, task.id))
        assert record.runtime.exit_code == 1 and record.outputs == {}
        assert record.runtime.error.startswith(f"trainyard: {words}"), record.runtime.error  # not "exit code 1"
        assert any(words in line for line in record.runtime.log_tail), record.runtime.log_tail
        assert words in log_text(conn, task.id)


def _placeholder_step():
    return {"model": 1}


def test_a_step_output_used_as_a_value_in_the_pipeline_function_says_so():
    """A component's result is a placeholder while the graph is built: arithmetic on either side,
    comparisons, printing and attribute access raise the one designed message (issue 14, 2e: ``100 *
    step()`` was a bare TypeError, ``print(step())`` printed ``<StepOutput ...>`` silently)."""
    from trainyard.controller.decorators import component, pipeline

    step = component(returns=["model"], name="step_three")(_placeholder_step)
    uses = {
        "100 * out": lambda out: 100 * out,
        "out * 100": lambda out: out * 100,
        "1 - out": lambda out: 1 - out,
        "2 ** out": lambda out: 2**out,
        "-out": lambda out: -out,
        "out == 3": lambda out: out == 3,
        "print(out)": print,
        "f'{out}'": lambda out: f"{out}",
        "out.shape": lambda out: out.shape,
        "round(out)": round,
    }

    def flow_using(use):
        @pipeline(name="placeholder")
        def flow():
            use(step())

        return flow

    for text, use in uses.items():
        flow = flow_using(use)
        with pytest.raises(
            InvalidInput, match=r"value of \$\{step_three\.model\} is only known when the pipeline runs"
        ):
            flow.build()
            pytest.fail(f"{text} was accepted")
