"""DataTorch's pipeline files and actions as written: its examples, its syntax, its action style.

The examples are DataTorch's own files (tests/fixtures/datatorch/pipelines, unchanged); the
actions they use are real git repositories made from tests/fixtures/datatorch/actions and found
through TRAINYARD_ACTIONS_SOURCE. Every test has its own TRAINYARD_HOME (conftest), so action
clones never land in the real ~/.trainyard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gitrepo import commit, git, make_repo
from workerproc import WorkerProcess

from trainyard import Queue, Task
from trainyard.controller import run_store
from trainyard.controller.files import load_file, load_text, run_here
from trainyard.controller.files.errors import PipelineFileError
from trainyard.queues import logs
from trainyard.queues.store import TaskStore
from trainyard.runtime import expr

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "datatorch"
PIPELINES = FIXTURES / "pipelines"


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def actions(tmp_path, monkeypatch) -> Path:
    """DataTorch's action repositories (tag v1) in a local folder, the configured actions source."""
    source = tmp_path / "action-repos"
    for folder in sorted((FIXTURES / "actions").glob("*/*")):
        repo = source / folder.parent.name / folder.name
        make_repo(repo, files_of(folder))
        git(repo, "tag", "v1")
    monkeypatch.setenv("TRAINYARD_ACTIONS_SOURCE", str(source))
    return source


def outputs(conn, run) -> dict:
    store = TaskStore(conn)
    return {job: store.get(state.task_id).outputs for job, state in run.state.items() if state.task_id}


def log_text(conn, run, job: str) -> str:
    return "\n".join(line.text for line in logs.read(conn, run.state[job].task_id))


def test_add_and_average_run_unchanged(conn, actions, run_cli):
    """add.yaml gives 30; average.yaml (``${{ variable.sum }}`` from an undeclared printed output) 15."""
    checked = run_cli("pipeline", "validate", str(PIPELINES / "add.yaml"), str(PIPELINES / "average.yaml"))
    assert checked.returncode == 0 and checked.stdout.count(": ok: pipeline") == 2, checked.stdout + checked.stderr
    proc = run_cli("pipeline", "run", str(PIPELINES / "add.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[add] 10 + 20 = 30" in proc.stdout
    proc = run_cli("pipeline", "run", str(PIPELINES / "average.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[average] 30 / 2 = 15" in proc.stdout
    listed = {r["name"]: r for r in json.loads(run_cli("pipeline", "list", "--json", check=True).stdout)}
    assert set(listed) == {"Add 10 and 20", "Average of 10 and 20"}
    assert all(r["status"] == "completed" for r in listed.values())
    assert list((Path(os.environ["TRAINYARD_HOME"]) / "actions").iterdir())  # clones stay in the test's home


def test_examples_on_workers_give_30_and_15(conn, actions, tmp_path, run_cli):
    """Submitted to real workers; every value is checked in the stored step outputs."""
    text = (PIPELINES / "average.yaml").read_text()
    # the job's outputs are what the web app and 'task show' report: add them in a copy to read them
    shown = tmp_path / "average_outputs.yaml"
    extra = "\n    outputs:\n      sum: ${{ variable.sum }}\n      result: ${{ variable.result }}\n"
    shown.write_text(text.rstrip() + extra)
    Queue.create("services")
    Queue.create("default")
    with WorkerProcess("-q", "services", "--services-mode", "2"), WorkerProcess("-q", "default", "--cpu-only"):
        ids = {}
        for path in (PIPELINES / "add.yaml", PIPELINES / "average.yaml", shown):
            ids[path.name] = run_cli("pipeline", "submit", str(path), check=True).stdout.split()[-1]
        for run_id in ids.values():
            Task.get(run_id, conn).wait(timeout=120)
    for name, run_id in ids.items():
        assert run_store.load(conn, run_id).status == "completed", (name, run_store.load(conn, run_id).message)
    assert outputs(conn, run_store.load(conn, ids["average_outputs.yaml"]))["average"] == {"sum": 30, "result": 15}
    assert "10 + 20 = 30" in log_text(conn, run_store.load(conn, ids["add.yaml"]), "add")
    assert "30 / 2 = 15" in log_text(conn, run_store.load(conn, ids["average.yaml"]), "average")


def test_dextr_is_refused_with_one_line_naming_the_web_feature(actions, run_cli):
    path = PIPELINES / "dextr.yaml"
    for command in ("validate", "run", "submit"):
        proc = run_cli("pipeline", command, str(path))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: {path}:5: triggers.annotatorButton: DataTorch's annotatorButton trigger")
        assert "web annotator" in lines[0]


def test_every_example_runs_or_is_refused(conn, actions):
    """DataTorch's whole examples folder: each file runs, or is refused with one line."""
    results = {}
    for path in sorted(PIPELINES.glob("*.yaml")):
        try:
            pf = load_file(path)
        except PipelineFileError as exc:
            assert len(exc.errors) == 1 and "DataTorch" in str(exc), str(exc)
            results[path.name] = "refused"
            continue
        results[path.name] = run_here(pf, conn=conn).status
    assert results == {"add.yaml": "completed", "average.yaml": "completed", "dextr.yaml": "refused"}


def test_datatorch_syntax_beside_trainyards(conn, actions, tmp_path):
    """Step names with spaces, .output., input., triggers: with a form, name from the file, @latest,
    bare timeouts in minutes, undeclared printed outputs, and the stand-in datatorch module."""
    make_repo(
        actions / "acme" / "echo",
        {
            "action-datatorch.yaml": "name: Echo\ninputs:\n  text: {type: string}\n"
            "  where: {type: string, default: '${{ directory.temp }}/echo'}\nruns: {using: python, main: m.py}\n",
            "m.py": "import datatorch\nfrom datatorch.utils.files import mkdir_exists\nfrom datatorch import agent\n"
            "assert datatorch.get_input('where') == agent.directories().temp + '/echo', datatorch.get_inputs()\n"
            "mkdir_exists(datatorch.get_input('where'))\n"
            "datatorch.set_output('said', datatorch.get_input('text') + ' (first)')\n",
        },
    )
    path = tmp_path / "dt-syntax.yaml"
    path.write_text(
        """
triggers:
  manual:
    role: OWNER
    form:
      type: object
      required: [who]
      properties:
        who: {type: string, description: Who is greeted}
        times: {type: integer, default: 2}
jobs:
  greet:
    steps:
      - name: Add Two
        action: datatorch/add@v1
        inputs: {a: "${{ input.times }}", b: 3}
        timeout: 2
      - name: Say It
        action: acme/echo@latest
        inputs:
          text: "${{ input.who }} got ${{ steps.Add Two.output.sum }}"
      - id: check
        run: test "${{ steps.Say It.outputs.said }}" = "ada got 5 (first)" && test "${{ variable.sum }}" = 5
    outputs:
      said: ${{ steps.Say It.output.said }}
"""
    )
    pf = load_file(path)
    assert pf.name == "dt-syntax"  # DataTorch names a file without 'name' after the file
    assert pf.on.manual.inputs["who"].required and pf.on.manual.inputs["times"].default == 2
    assert pf.jobs["greet"].steps[0].timeout == "2m"  # DataTorch's unit
    run = run_here(pf, inputs={"who": "ada"}, conn=conn)
    assert run.status == "completed", log_text(conn, run, "greet")
    assert outputs(conn, run)["greet"] == {"said": "ada got 5 (first)"}
    # @latest is the default branch, fetched again: a new commit is what the next run uses
    commit(actions / "acme" / "echo", {"m.py": "import datatorch\ndatatorch.set_output('said', 'v2')\n"}, "v2")
    run = run_here(load_file(path), inputs={"who": "ada"}, conn=conn)
    assert run.status == "failed" and outputs(conn, run)["greet"] == {}  # the check step saw 'v2'
    assert "Say It" in log_text(conn, run, "greet")


def test_web_service_calls_fail_with_one_line_naming_the_call(conn, actions, tmp_path):
    folder = tmp_path / "actions" / "fetch"
    folder.mkdir(parents=True)
    (folder / "action-datatorch.yaml").write_text(
        "name: Fetch\ninputs:\n  fileId: {type: string, required: true}\nruns: {using: python, main: main.py}\n"
    )
    (folder / "main.py").write_text(
        "import datatorch\nfrom datatorch import ApiClient\n"
        "print('downloading', datatorch.get_input('fileId'), flush=True)\n"
        "ApiClient().download_file(datatorch.get_input('fileId'), directory='x')\n"
    )
    text = "name: fetch\njobs:\n  a:\n    steps:\n      - action: ./actions/fetch\n        inputs: {fileId: f1}\n"
    run = run_here(load_text(text, "fetch.yaml", base_dir=tmp_path), conn=conn)
    assert run.status == "failed"
    log = log_text(conn, run, "a")
    assert "downloading f1" in log
    assert "datatorch: datatorch.ApiClient().download_file() needs DataTorch's web service" in log
    assert "Traceback" not in log


def test_step_cache_reuses_outputs_for_the_same_inputs(conn, actions, tmp_path):
    text = """
name: cached
jobs:
  a:
    steps:
      - id: first
        action: datatorch/add@v1
        cache: true
        inputs: {a: 1, b: 2}
    outputs: {sum: "${{ steps.first.outputs.sum }}"}
"""
    first = run_here(load_text(text, "cached.yaml"), conn=conn)
    second = run_here(load_text(text, "cached.yaml"), conn=conn)
    assert outputs(conn, first)["a"] == outputs(conn, second)["a"] == {"sum": 3}
    assert "1 + 2 = 3" in log_text(conn, first, "a")
    second_log = log_text(conn, second, "a")
    assert "results found in the step cache" in second_log and "1 + 2 = 3" not in second_log
    with pytest.raises(PipelineFileError, match="'cache' applies to 'action' steps"):
        load_text("name: x\njobs:\n  a:\n    steps: [{run: 'true', cache: true}]\n")


def test_references_in_datatorch_spelling_are_checked(actions):
    bad = """
name: refs
jobs:
  a:
    steps:
      - name: First Step
        run: echo "x=1" >> "$TRAINYARD_OUTPUT"
      - run: echo ${{ steps.Frist Step.output.x }} ${{ input.nope }}
"""
    with pytest.raises(PipelineFileError) as info:
        load_text(bad, "refs.yaml")
    text = str(info.value)
    assert "unknown step 'Frist Step'" in text and "unknown input 'nope'" in text
    assert expr.parse("steps.First Step.output.x") == ("ref", ("steps", "First Step", "outputs", "x"))


def test_human_actions_are_refused_with_one_line(tmp_path):
    folder = tmp_path / "actions" / "review"
    folder.mkdir(parents=True)
    (folder / "action-datatorch.yaml").write_text("name: Review\nruns:\n  using: human\n")
    text = "name: h\njobs:\n  a:\n    steps:\n      - action: ./actions/review\n"
    with pytest.raises(PipelineFileError) as info:
        load_text(text, "h.yaml", base_dir=tmp_path)
    assert any("a human task is done by a person in DataTorch's web app" in str(e) for e in info.value.errors)


def test_stand_in_client_is_standard_library_only():
    import ast

    source = (REPO / "trainyard" / "runtime" / "datatorch_path" / "datatorch.py").read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"importlib", "json", "os", "sys", "types"}


def test_latest_is_fetched_again_for_every_run_of_a_registered_file(conn, actions, tmp_path):
    """A registered file's @latest action: each triggered run is pinned to the default branch's commit
    at that moment, not to the one seen at registration (a moved branch would fail the run)."""
    from trainyard import Queue
    from trainyard.controller.files import submit, trigger

    Queue.create("services")
    Queue.create("default")
    repo = actions / "acme" / "hello"
    first = make_repo(repo, {"action-datatorch.yaml": "name: Hi\nruns: {using: cmd, command: echo hi}\n"})
    text = "name: latest\njobs:\n  a:\n    steps:\n      - action: acme/hello@latest\n"

    def pinned(run_id: str) -> str:
        job = run_store.load(conn, run_id).steps["a"].template["configuration"]["trainyard.job"]
        [action] = job["actions"].values()
        return action["sha"]

    assert pinned(submit(load_text(text, "latest.yaml"), conn=conn)) == first
    second = commit(repo, {"README.md": "moved on\n"}, "second")
    assert pinned(trigger("latest", conn=conn)) == second


def test_stand_in_serves_what_published_actions_import(tmp_path):
    """The imports of DataTorch's published actions (add, download-file, dextr, import-coco) load;
    local calls work; the first call needing its web service ends the process with one line."""
    import subprocess
    import sys

    script = tmp_path / "entry.py"
    script.write_text(
        "import datatorch\n"
        "from datatorch import agent, set_output, get_inputs, ApiClient\n"
        "from datatorch.api.api import ApiClient as Client2\n"
        "from datatorch.api.entity.sources.image import Segmentations, segmentations\n"
        "from datatorch.api.scripts.import_coco import import_coco\n"
        "from datatorch.utils.files import mkdir_exists\n"
        "import datatorch.core\n"
        "assert datatorch.get_input('n') == 2 and get_inputs() == {'n': 2}\n"
        "mkdir_exists(agent.directories().temp)\n"
        "set_output('ok', {'base': datatorch.core.BASE_URL})\n"
        "s = Segmentations()\n"
        "print('never here')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TRAINYARD_RUN_DIR": str(tmp_path)}
    env["PYTHONPATH"] = str(REPO / "trainyard" / "runtime" / "datatorch_path")
    proc = subprocess.run([sys.executable, str(script), '{"n": 2}'], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stdout == '::ok::{"base": "https://datatorch.io"}\n'
    assert proc.stderr.strip().splitlines() == [
        "datatorch: datatorch.api.entity.sources.image.Segmentations() needs DataTorch's web service, which trainyard"
        " does not have (only get_inputs, get_input, set_output, agent.directories and utils.files work here)"
    ]
    assert (tmp_path / "tmp").is_dir()


def test_node_actions_run_with_their_inputs_as_json(conn, tmp_path):
    """DataTorch declares node actions but never ran them (its NodeRunner is empty); trainyard runs
    ``node <main> '<inputs json>'`` with the INPUT_* variables, like its python actions."""
    import shutil

    if shutil.which("node") is None:
        pytest.skip("no node on this machine (apt-get install nodejs)")
    folder = tmp_path / "actions" / "count"
    folder.mkdir(parents=True)
    (folder / "action-datatorch.yaml").write_text(
        "name: Count\ninputs:\n  items: {type: array, required: true}\nruns: {using: node, main: index.js}\n"
    )
    (folder / "index.js").write_text(
        "const inputs = JSON.parse(process.argv[process.argv.length - 1]);\n"
        "console.log(`::count::${inputs.items.length}`);\n"
        "console.log(`env saw ${process.env.INPUT_ITEMS}`);\n"
    )
    text = (
        "name: node\njobs:\n  a:\n    steps:\n      - name: Count It\n        action: ./actions/count\n"
        "        inputs: {items: [1, 2, 3]}\n    outputs: {count: '${{ steps.Count It.output.count }}'}\n"
    )
    run = run_here(load_text(text, "node.yaml", base_dir=tmp_path), conn=conn)
    assert run.status == "completed", log_text(conn, run, "a")
    assert outputs(conn, run)["a"] == {"count": 3}
    assert "env saw [1, 2, 3]" in log_text(conn, run, "a")
