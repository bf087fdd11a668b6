"""Pipeline files: local runs, runs on real workers, actions from git, templating, injection, bad input."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from gitrepo import git, make_repo
from workerproc import WorkerProcess

from trainyard import Queue, Task
from trainyard.cli import cli
from trainyard.controller import run_store
from trainyard.controller.files import json_schema, load_file, load_text, registry, run_here, validate_text
from trainyard.controller.files.errors import PipelineFileError
from trainyard.queues import keys, logs
from trainyard.queues.store import TaskStore
from trainyard.runtime import expr

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "pipelines"


def job_outputs(conn, run) -> dict:
    store = TaskStore(conn)
    return {name: store.get(state.task_id).outputs for name, state in run.state.items() if state.task_id}


def copy_example(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "pipelines"
    if not folder.exists():
        shutil.copytree(EXAMPLES, folder)
    return folder / name


@pytest.mark.embedded
def test_three_jobs_run_locally_with_one_command(run_cli, tmp_path):
    """Zero set-up (embedded Redis, in-process worker): two jobs in parallel, the third sees both outputs."""
    order = tmp_path / "order.txt"
    try:
        proc = run_cli("pipeline", "run", str(EXAMPLES / "three_jobs.yaml"), "-p", f"order_file={order}", "-p", "n=4")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = order.read_text().split()
        assert sorted(lines[:2]) == ["left", "right"] and lines[2] == "join"  # the needing job ran last
        out = proc.stdout
        assert "[left] ▶ calc" in out and "[right] add: 4 + 10 = 14" in out  # live per-step output
        assert "[join] left gave 8, right gave 14" in out
        shown = json.loads(run_cli("pipeline", "list", "--json", check=True).stdout)[0]
        assert shown["name"] == "three-jobs" and shown["status"] == "completed"
        join = json.loads(run_cli("task", "show", shown["state"]["join"]["task_id"], "--json", check=True).stdout)
        assert join["outputs"] == {"total": 22, "message": "hello", "seen": 8}  # typed, from both jobs
    finally:
        run_cli("down")


def test_local_run_order_and_outputs(conn, tmp_path):
    pf = load_file(EXAMPLES / "three_jobs.yaml")
    run = run_here(pf, {"n": "5"}, {"message": "hi there"}, conn)
    assert run.status == "completed"
    store = TaskStore(conn)
    records = {name: store.get(state.task_id) for name, state in run.state.items()}
    assert records["join"].started >= max(records["left"].ended, records["right"].ended)
    assert records["join"].outputs == {"total": 25, "message": "hi there", "seen": 10}
    assert records["right"].outputs == {"sum": 15}
    assert run_store.load(conn, run.id).name == "three-jobs"  # listed with the Python pipelines


def test_submitted_file_runs_on_workers_with_the_same_result(conn, tmp_path, run_cli):
    local = run_here(load_file(EXAMPLES / "three_jobs.yaml"), {"n": "2"}, None, conn)
    Queue.create("services")
    Queue.create("default")
    with WorkerProcess("-q", "services", "--services-mode", "2"), WorkerProcess("-q", "default", "--cpu-only"):
        proc = run_cli("pipeline", "submit", str(EXAMPLES / "three_jobs.yaml"), "-p", "n=2", check=True)
        run_id = proc.stdout.split()[-1]
        Task.get(run_id, conn).wait(timeout=120)
        fired = run_cli("pipeline", "trigger", "three-jobs", "-i", "message=by hand", "-p", "n=1", check=True)
        triggered = fired.stdout.split()[-1]
        Task.get(triggered, conn).wait(timeout=120)
        refused = run_cli("pipeline", "trigger", "three-jobs", "-i", "nope=1")
        assert refused.returncode == 1 and "unknown input(s) nope" in refused.stderr
    manual = run_store.load(conn, triggered)
    assert manual.status == "completed" and job_outputs(conn, manual)["join"]["message"] == "by hand"
    run = run_store.load(conn, run_id)
    assert run.status == "completed", run.message
    assert run.controller_queue == "services" and run.local_queue is None
    assert job_outputs(conn, run) == job_outputs(conn, local)
    assert [e["name"] for e in registry.entries(conn)] == ["three-jobs"]


def test_action_from_a_local_git_repository_at_a_tag(conn, tmp_path, monkeypatch):
    repos = tmp_path / "repos"
    source = {p.name: p.read_text() for p in (EXAMPLES / "actions" / "add").iterdir()}
    make_repo(repos / "examples" / "add", source)
    git(repos / "examples" / "add", "tag", "v1")
    # a later commit on main must not be what v1 runs
    (repos / "examples" / "add" / "main.py").write_text("raise SystemExit('not the tagged version')\n")
    git(repos / "examples" / "add", "commit", "-qam", "broken")
    monkeypatch.setenv("TRAINYARD_ACTIONS_SOURCE", str(repos))
    text = f"""
name: git-actions
jobs:
  add:
    steps:
      - id: by-string
        action: examples/add@v1
        inputs: {{a: 2, b: "0.5"}}
      - id: by-object
        action:
          name: examples/add
          tag: v1
          git: {repos / "examples" / "add"}
        inputs:
          a: ${{{{ steps.by-string.outputs.sum }}}}
    outputs:
      first: ${{{{ steps.by-string.outputs.sum }}}}
      second: ${{{{ steps.by-object.outputs.sum }}}}
"""
    pf = load_text(text, "git-actions.yaml")
    run = run_here(pf, conn=conn)
    assert run.status == "completed", run.message
    assert job_outputs(conn, run)["add"] == {"first": 2.5, "second": 3.5}  # typed numbers
    # typed inputs are checked before anything runs
    bad = text.replace('b: "0.5"', "b: lots, c: 1")
    errors = validate_text(bad, "bad.yaml")
    messages = [(e.field, e.message) for e in errors]
    assert (
        "jobs.add.steps[0].inputs.b",
        "wrong type: b: 'lots' is not a valid number (could not convert string to float: 'lots')",
    ) in messages
    assert any(f == "jobs.add.steps[0].inputs.c" and "unknown input 'c'" in m for f, m in messages)
    assert all(e.line for e in errors)


def test_values_never_reach_shell_text(conn, tmp_path):
    """An input such as $(touch pwned) is data everywhere: run commands, env, action commands and args."""
    work = tmp_path / "work"
    work.mkdir()
    evil = f"$(touch {work}/pwned1); touch {work}/pwned2 `touch {work}/pwned3`"
    greet = copy_example(tmp_path, "actions/greet")
    text = f"""
name: injection
on:
  manual:
    inputs:
      msg: {{type: string, required: true}}
jobs:
  j:
    env:
      FROM_INPUT: ${{{{ inputs.msg }}}}
    steps:
      - id: echo
        run: |
          echo "quoted: ${{{{ inputs.msg }}}}"
          echo unquoted: ${{{{ inputs.msg }}}}
          echo "env: $FROM_INPUT"
          echo "said=${{{{ inputs.msg }}}}" >> "$TRAINYARD_OUTPUT"
      - id: greet
        action: {greet}
        inputs:
          who: ${{{{ steps.echo.outputs.said }}}}
    outputs:
      said: ${{{{ steps.echo.outputs.said }}}}
      greeting: ${{{{ steps.greet.outputs.greeting }}}}
"""
    pf = load_text(text, "injection.yaml", base_dir=tmp_path)
    run = run_here(pf, inputs={"msg": evil}, conn=conn)
    assert run.status == "completed", run.message
    outputs = job_outputs(conn, run)["j"]
    assert outputs == {"said": evil, "greeting": f"hello, {evil}"}
    assert not list(work.glob("pwned*")) and not list(Path.cwd().glob("pwned*"))


def test_failed_step_stops_the_job_and_skips_what_needs_it(conn, tmp_path):
    text = """
name: failing
params:
  flag: {type: boolean, default: false}
jobs:
  a:
    steps:
      - run: echo before
      - run: echo "broken input" >&2; exit 3
      - run: echo never > never.txt
  b:
    needs: a
    steps: [{run: "true"}]
  c:
    if: ${{ params.flag }}
    steps: [{run: "true"}]
  e:
    steps:
      - run: sleep 60
        timeout: 0.5
  d:
    steps:
      - if: ${{ !params.flag }}
        id: s
        run: echo "ran=yes" >> "$TRAINYARD_OUTPUT"
      - if: params.flag
        id: never
        run: exit 1
    outputs: {ran: "${{ steps.s.outputs.ran }}", skipped: "${{ steps.never.outputs.x }}"}
"""
    run = run_here(load_text(text, "failing.yaml"), conn=conn)
    assert run.status == "failed"
    states = {name: s.status for name, s in run.state.items()}
    assert states == {"a": "failed", "b": "skipped", "c": "skipped", "d": "completed", "e": "failed"}
    assert job_outputs(conn, run)["d"] == {"ran": "yes", "skipped": None}  # a skipped step's output: null
    log = "\n".join(line.text for line in logs.read(conn, run.state["a"].task_id))
    assert "exit code 3" in log and "skipping the remaining 1 step(s)" in log
    log = "\n".join(line.text for line in logs.read(conn, run.state["e"].task_id))
    assert "timed out after 0.5s" in log
    # a failed job's error is its last meaningful line: the step's own, or the runner's refusal (issue 14, 2d)
    assert Task.get(run.state["a"].task_id).data.runtime.error == "broken input"
    assert Task.get(run.state["e"].task_id).data.runtime.error.endswith(": timed out after 0.5s")


BAD = {
    "syntax": ("name: x\njobs:\n  a:\n    steps: [run: oops\n", 5, "", "syntax error"),
    "unknown-key": (
        "name: x\njobs:\n  a:\n    stepz: []\n    steps: [{run: 'true'}]\n",
        4,
        "jobs.a.stepz",
        "unknown key 'stepz'",
    ),
    "cycle": (
        "name: x\njobs:\n  a:\n    needs: b\n    steps: [{run: 'true'}]\n"
        "  b:\n    needs: [a]\n    steps: [{run: 'true'}]\n",
        4,
        "jobs.a.needs",
        "cycle: a -> b -> a",
    ),
    "step-ref": (
        "name: x\njobs:\n  a:\n    steps:\n      - run: echo ${{ steps.prep.outputs.x }}\n",
        5,
        "jobs.a.steps[0].run",
        "unknown step 'prep'",
    ),
    "missing-action": (
        "name: x\njobs:\n  a:\n    steps:\n      - action: ./actions/nowhere\n",
        5,
        "jobs.a.steps[0].action",
        "action folder './actions/nowhere' not found",
    ),
    "missing-input": (
        "name: x\njobs:\n  a:\n    steps:\n      - action: ./actions/add\n        inputs: {b: 2}\n",
        6,
        "jobs.a.steps[0].inputs",
        "missing required input 'a'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_with_file_line_and_field(case, conn, tmp_path, run_cli):
    """The commands in-process (CliRunner: fast); test_three_jobs_... runs the real command line."""
    text, line, field, message = BAD[case]
    path = copy_example(tmp_path, "bad.yaml")
    path.write_text(text)
    for command in (["validate"], ["run"], ["submit"]):
        result = CliRunner().invoke(cli, ["pipeline", *command, str(path)])
        assert result.exit_code == 1, (command, result.output)
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"error: {path}:{line}: {field}".rstrip()), first
        assert message in result.stderr
    assert conn.hlen(registry.REGISTRY) == 0 and conn.zcard(keys.PIPELINES) == 0  # nothing registered or run
    assert TaskStore(conn).count() == 0


def test_editor_interface_and_published_schema():
    errors = validate_text("name: x\njobs: {}\n")
    assert errors and errors[0].file == "<editor>" and errors[0].field == "jobs"
    assert validate_text((EXAMPLES / "three_jobs.yaml").read_text(), "three_jobs.yaml") != []  # local action: no folder
    with pytest.raises(PipelineFileError) as info:
        load_text("name: [", "x.yml")
    assert info.value.errors[0].line == 1
    published = json.loads((REPO / "docs" / "pipeline.schema.json").read_text())
    assert published == json_schema(), "docs/pipeline.schema.json is stale: trainyard pipeline schema > it"
    import jsonschema

    for path in sorted(EXAMPLES.glob("*.yaml")):
        import yaml

        jsonschema.validate(yaml.safe_load(path.read_text().replace("\non:", '\n"on":')), published)


def test_expressions_keep_types_and_interpolate_text():
    ctx = {"params": {"lr": 0.1, "n": 3, "on": True, "tags": ["a", "b"]}, "steps": {"s": {"outputs": {"x": "7"}}}}
    assert expr.render("${{ params.lr }}", ctx) == 0.1
    assert expr.render(" ${{ params.tags }} ", ctx) == ["a", "b"]
    assert (
        expr.render("lr=${{ params.lr }} on=${{ params.on }} t=${{ params.tags }}", ctx)
        == 'lr=0.1 on=true t=["a", "b"]'
    )
    assert expr.render({"k": ["${{ params.n }}"]}, ctx) == {"k": [3]}
    assert expr.render("${{ params.n }} and ${{ params.lr }}", ctx) == "3 and 0.1"  # two, not one whole
    assert expr.condition("${{ params.n > 2 && steps.s.outputs.x == 7 }}", ctx) is True
    assert expr.condition("!params.on || contains(params.tags, 'c')", ctx) is False
    assert expr.render("${{ format('{0}-{1}', params.n, 'x') }}", ctx) == "3-x"
    with pytest.raises(expr.ExpressionError):
        expr.render("${{ params.missing }}", ctx)
    assert expr.shell_safe('echo "${{ inputs.x }}" ${{ params.y }}') == (
        'echo "${TRAINYARD_EXPR_0}" ${TRAINYARD_EXPR_1}',
        {"TRAINYARD_EXPR_0": " inputs.x ", "TRAINYARD_EXPR_1": " params.y "},
    )


def test_examples_seed_actions_and_train_evaluate_report(conn, tmp_path, run_cli):
    """The seeds' action examples (string and object form) from a local folder of repositories, offline."""
    repos = tmp_path / "repos"
    make_repo(repos / "examples" / "add", {p.name: p.read_text() for p in (EXAMPLES / "actions" / "add").iterdir()})
    git(repos / "examples" / "add", "tag", "v1")
    env = {"TRAINYARD_ACTIONS_SOURCE": str(repos)}
    for name in ("seed_action_string.yaml", "seed_action_object.yaml"):
        proc = run_cli("pipeline", "run", str(EXAMPLES / name), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "add: 2 + 3 = 5" in proc.stdout
    without = run_cli(
        "pipeline",
        "validate",
        str(EXAMPLES / "seed_action_string.yaml"),
        env={"TRAINYARD_ACTIONS_SOURCE": str(tmp_path / "empty")},
    )
    assert without.returncode == 1 and "cannot fetch action" in without.stderr
    pf = load_file(EXAMPLES / "train_evaluate_report.yaml")
    assert [s.cron for s in pf.on.schedule] == ["0 3 * * *"]
    good = run_here(pf, {"lr": "0.3"}, {"note": "nightly"}, conn)
    assert good.status == "completed" and job_outputs(conn, good)["report"]["published"] is True
    low = run_here(pf, {"lr": "0.01", "epochs": "1"}, None, conn)  # accuracy under target: no report
    assert low.status == "completed" and low.state["report"].status == "skipped"


def test_json_files_report_lines_too():
    text = (
        '{\n  "name": "j",\n  "jobs": {\n    "a": {\n      "steps": [{"run": "true", "shel": "bash"}]\n    }\n  }\n}\n'
    )
    (error,) = validate_text(text, "p.json")
    assert (error.file, error.line, error.field, error.message) == (
        "p.json",
        5,
        "jobs.a.steps[0].shel",
        "unknown key 'shel'",
    )
    duplicate = validate_text("name: a\nname: b\njobs: {a: {steps: [{run: 'true'}]}}\n", "d.yaml")
    assert [(e.line, e.message) for e in duplicate] == [(2, "duplicate key")]


def test_docker_action(conn, tmp_path, docker_image, monkeypatch):
    """runs.using docker: inputs as INPUT_* in the container, the workspace mounted, outputs back."""
    action = tmp_path / "actions" / "shout"
    action.mkdir(parents=True)
    (action / "action.yaml").write_text(
        "name: Shout\ninputs:\n  word: {required: true}\noutputs:\n  loud: {type: string}\n"
        f"runs:\n  using: docker\n  image: {docker_image}\n"
        '  args: [sh, -c, \'echo "loud=$INPUT_WORD!" >> "$TRAINYARD_OUTPUT"; echo seen > /workspace/seen.txt\']\n'
    )
    text = """
name: dockerized
jobs:
  a:
    steps:
      - id: s
        action: ./actions/shout
        inputs: {word: "$(touch /workspace/pwned)"}
      - run: test -f seen.txt && test ! -e pwned
    outputs: {loud: "${{ steps.s.outputs.loud }}"}
"""
    run = run_here(load_text(text, "d.yaml", base_dir=tmp_path), conn=conn)
    assert run.status == "completed", run.message
    assert job_outputs(conn, run)["a"] == {"loud": "$(touch /workspace/pwned)!"}


def test_job_in_venv_mode(conn, tmp_path):
    """A job's mode reaches its task: in venv mode the steps' `python` is the job's own environment."""
    text = """
name: venv-job
jobs:
  a:
    mode: venv
    gpus: 0
    steps:
      - id: s
        run: python -c 'import sys; print("prefix=" + sys.prefix)' >> "$TRAINYARD_OUTPUT"
    outputs: {prefix: "${{ steps.s.outputs.prefix }}"}
"""
    run = run_here(load_text(text, "venv.yaml"), conn=conn)
    assert run.status == "completed", run.message
    record = TaskStore(conn).get(run.state["a"].task_id)
    assert record.execution.mode.value == "venv" and record.runtime.environment["mode"] == "venv"
    assert record.outputs["prefix"].endswith("/envs/" + record.runtime.environment["key"])


def test_datatorch_action_file_and_printed_outputs(conn, tmp_path):
    """An action-datatorch.yaml action written for DataTorch: inputs as one JSON argument, outputs
    printed as ::name::<json> (declared or not, as DataTorch reads them; other lines with '::' stay log lines)."""
    action = tmp_path / "actions" / "count"
    action.mkdir(parents=True)
    (action / "action-datatorch.yaml").write_text(
        "name: Count\ninputs:\n  items: {type: array, required: true}\n  flag: {type: boolean, default: 'false'}\n"
        "outputs:\n  total: {type: integer}\nruns:\n  using: python\n  main: main.py\n"
    )
    (action / "main.py").write_text(
        "import json, sys\ninputs = json.loads(sys.argv[-1])\n"
        "assert inputs['flag'] is False, inputs\n"  # DataTorch read 'false' as True
        "print('note: a::b::c stays a log line')\n"
        "print('::undeclared::1')\n"
        "print('::total::' + json.dumps(len(inputs['items'])))\n"
    )
    text = """
name: dt
jobs:
  a:
    steps:
      - id: c
        action: ./actions/count
        inputs: {items: [1, 2, 3]}
    outputs: {total: "${{ steps.c.outputs.total }}", undeclared: "${{ steps.c.outputs.undeclared }}"}
"""
    run = run_here(load_text(text, "dt.yaml", base_dir=tmp_path), conn=conn)
    assert run.status == "completed", run.message
    assert job_outputs(conn, run)["a"] == {"total": 3, "undeclared": 1}
    log = [line.text for line in logs.read(conn, run.state["a"].task_id)]
    assert "note: a::b::c stays a log line" in log and "::total::3" in log


def test_shipped_runner_is_python38_syntax():
    """The job runner runs with the job's Python, which may be older than trainyard's."""
    import ast

    for name in ("jobrun.py", "expr.py"):
        ast.parse((REPO / "trainyard" / "runtime" / name).read_text(), feature_version=(3, 8))


def test_gpu_jobs_run_locally_only_where_gpus_are(run_cli, tmp_path):
    """Stand-in NVML (no GPU on CI): a job with gpus: 1 gets GPU 0 pinned; without GPUs it is refused at once."""
    path = tmp_path / "gpu.yaml"
    path.write_text(
        'name: gpu\njobs:\n  a:\n    gpus: 1\n    steps:\n      - run: echo "pinned=$CUDA_VISIBLE_DEVICES"\n'
    )
    standin = {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS": '[{"name": "Stand-in", "memory_total_mb": 1024}]'}
    proc = run_cli("pipeline", "run", str(path), env=standin)
    assert proc.returncode == 0 and "[a] pinned=0" in proc.stdout, proc.stdout + proc.stderr
    refused = run_cli("pipeline", "run", str(path), env={"TRAINYARD_NVML": "off"})
    assert refused.returncode == 1
    assert "jobs.a.gpus: the job needs 1 GPU(s) and this machine has 0" in refused.stderr


FIELDS_FILE = """
name: fields
queue: parked
jobs:
  requirements: {requirements: [six], steps: [{run: "true"}]}
  python: {python: "3.10", steps: [{run: "true"}]}
  image: {image: "busybox:1.36", steps: [{run: "true"}]}
  env: {env: {GREETING: hi}, steps: [{run: "true"}]}
  gpus: {gpus: 1, steps: [{run: "true"}]}
  timeout: {timeout: 90s, steps: [{run: "true"}]}
  retries: {retries: 2, steps: [{run: "true"}]}
  mode: {mode: venv, steps: [{run: "true"}]}
"""
_LAUNCHED: dict = {}


def _launched_jobs(conn) -> dict:
    """The step and the task record the controller launched for each job of FIELDS_FILE (computed
    once: the jobs wait on a queue no worker serves, and the run is stopped when all are queued)."""
    if not _LAUNCHED:
        from pipelinekit import wait_run

        from trainyard.controller.engine import Controller
        from trainyard.controller.files.compile import build

        Queue.create("parked")
        Queue.create("services")
        run_id = build(load_text(FIELDS_FILE, "fields.yaml"), connection=conn).start(queue="services")
        controller = Controller(conn, run_id)
        thread = threading.Thread(target=controller.execute, daemon=True)
        thread.start()
        run = wait_run(
            conn, run_id, lambda r: r.state and all(r.state.get(job) and r.state[job].task_id for job in r.steps)
        )
        controller.stop_event.set()
        thread.join(timeout=120)
        store = TaskStore(conn)
        _LAUNCHED.update({job: (run.steps[job], store.get(s.task_id)) for job, s in run.state.items()})
    return _LAUNCHED


@pytest.mark.parametrize(
    "field, reached",
    [
        ("requirements", lambda step, rec: rec.script.requirements == ["six"]),
        ("python", lambda step, rec: rec.script.python == "3.10"),
        ("image", lambda step, rec: rec.container.image == "busybox:1.36"),
        ("env", lambda step, rec: rec.configuration["trainyard.job"]["env"] == {"GREETING": "hi"}),
        ("gpus", lambda step, rec: rec.execution.gpus.count == 1),
        ("timeout", lambda step, rec: rec.execution.time_limit == 90),
        ("retries", lambda step, rec: step.retries == 2),  # the controller retries a step itself
        ("mode", lambda step, rec: rec.execution.mode.value == "venv"),
    ],
)
def test_every_job_field_reaches_the_task(conn, field, reached):
    """Issue 14, 2a: a job's ``requirements`` never reached its task (only base-task steps got them)."""
    step, record = _launched_jobs(conn)[field]
    assert reached(step, record), record.model_dump(exclude={"configuration"})


def test_json_pipeline_files_are_parsed_as_json(tmp_path):
    """Issue 14, 2f: a .json file was read as YAML (comments and trailing commas accepted)."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"name": "j", "jobs": {"a": {"steps": [{"run": "true"}]}}}))
    assert load_file(good).name == "j"
    for text, line in [
        ('{"name": "j", # a comment\n "jobs": {"a": {"steps": [{"run": "true"}]}}}', 1),
        ('{"name": "j",\n "jobs": {"a": {"steps": [{"run": "true"},]}}}', 2),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(PipelineFileError) as caught:
            load_file(bad)
        [error] = caught.value.errors
        assert (error.line, error.message.split(":")[0]) == (line, "not valid JSON"), error


def test_an_action_file_s_expressions_and_defaults_are_checked(tmp_path):
    """Issue 14, 2f: a misspelt input in an action's command passed validation and failed at run
    time; an expression in an input's default reached the action as its literal text."""
    action = tmp_path / "act"
    action.mkdir()
    (action / "action.yaml").write_text(
        "name: greet\n"
        "inputs:\n"
        "  who: {type: string, default: '${{ 1 + 1 }}'}\n"
        "runs:\n"
        "  using: command\n"
        "  command: echo hello ${{ inputs.whom }} from ${{ action.path }}\n"
    )
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: p\njobs:\n  a:\n    steps:\n      - action: ./act\n")
    errors = validate_text(pipeline.read_text(), str(pipeline), tmp_path)
    found = [(Path(e.file).name, e.line, e.field, e.message) for e in errors]
    assert found == [
        ("p.yaml", 5, "jobs.a.steps[0].action", "action ./act: its action file is invalid"),
        ("action.yaml", 3, "inputs.who.default", "a default is a plain value: ${{ }} is not evaluated there"),
        ("action.yaml", 6, "runs.command", "${{ inputs.whom }}: unknown input 'whom' (declared: who)"),
    ]


def test_an_object_form_action_s_mistake_is_named_without_union_noise():
    """Issue 14, 2f: an object-form action's error came after ``action.str: Input should be a valid string``."""
    text = "name: p\njobs:\n  a:\n    steps:\n      - action: {tag: v1}\n      - action: {name: o/r, tagg: v1}\n"
    found = [(e.line, e.field, e.message) for e in validate_text(text, resolve_actions=False)]
    assert found == [
        (5, "jobs.a.steps[0].action.name", "missing required key 'name'"),
        (6, "jobs.a.steps[1].action.tagg", "unknown key 'tagg'"),
    ]
