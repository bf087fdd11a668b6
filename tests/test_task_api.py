"""The run-folder protocol end to end, without a worker: real task processes write, EventReader reads."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from trainyard.runtime import task_api
from trainyard.runtime.task_api import RunContext, current_task
from trainyard.worker.runfolder import EventReader, create_run_folder, open_artifact, resolve_artifact

TASK_API_FILE = Path(task_api.__file__).resolve()

TASK = {
    "id": "t-123",
    "name": "train resnet",
    "project": "vision",
    "attempt": 2,
    "parameters": {"General/lr": 0.5, "General/epochs": 3, "Args/seed": 7, "General/tags": ["a", "b"]},
    "configuration": {"model": {"depth": 50}},
}

# What the task script does; IMPORT defines `current_task` first.
TASK_BODY = """
import argparse, json, sys
from pathlib import Path

work = Path(sys.argv[1])
t = current_task()
assert t is current_task()
cfg = t.connect({"lr": 0.1, "epochs": 1.0, "batch": 32, "layers": [64, 128]})
again = t.connect({"batch": 64, "layers": [1], "extra": "x"})
ns = t.connect(argparse.Namespace(seed=1, opt="sgd"), name="Args")
t.log_metric("loss", "train", 0.5, step=1)
t.log_metric("loss", "train", 2)
t.set_output("acc", 0.9)
t.set_output("summary", {"best": 3, "tags": ["a"], "none": None})
paths = {
    "file": t.upload_artifact("weights", work / "w.txt", metadata={"epoch": 3}),
    "link": t.upload_artifact("linked", str(work / "link.txt")),
    "bytes": t.upload_artifact("blob", b"\\x00\\x01binary"),
    "json": t.upload_artifact("stats", {"a": 1, "b": [1.5, None]}),
    "dir": t.upload_artifact("tree", work / "tree"),
}
print(json.dumps({
    "identity": [t.id, t.name, t.project, t.attempt, t.offline],
    "cfg": cfg, "again": again, "ns": vars(ns), "paths": paths,
    "params": t.get_parameters(), "lr": t.get_parameter("lr"), "seed": t.get_parameter("Args/seed"),
    "missing": t.get_parameter("nope", "dflt"), "configuration": t.get_configuration(),
}))
"""

PACKAGE_IMPORT = "from trainyard.runtime.task_api import current_task\n"

# Loads task_api.py as a lone file in an interpreter that cannot see trainyard or any site-packages.
STANDALONE_IMPORT = """
import importlib.util, sys
try:
    import trainyard
except ImportError:
    pass
else:
    raise SystemExit("trainyard must not be importable here")
spec = importlib.util.spec_from_file_location("task_api", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
current_task = module.current_task
"""

STDLIB_CHECK = """
stdlib = getattr(sys, "stdlib_module_names", None)
if stdlib is not None:
    roots = {name.split(".")[0] for name in sys.modules}
    foreign = sorted(r for r in roots if r not in stdlib and r not in sys.builtin_module_names and r != "__main__")
    assert not foreign, foreign
"""


def _env(run_dir: Path | None, task_id: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (task_api.ENV_RUN_DIR, task_api.ENV_TASK_ID)}
    if run_dir is not None:
        env[task_api.ENV_RUN_DIR] = str(run_dir)
        env[task_api.ENV_TASK_ID] = task_id or TASK["id"]
    return env


def _run_child(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _work_folder(tmp_path: Path) -> Path:
    """Files for the task to upload: a plain file, a symlink to a file outside, a folder with a link."""
    work = tmp_path / "work"
    (work / "tree" / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("linked content")
    (work / "w.txt").write_text("weights v1")
    (work / "link.txt").symlink_to(outside / "secret.txt")
    (work / "tree" / "a.txt").write_text("A")
    (work / "tree" / "sub" / "b.txt").write_text("B")
    (work / "tree" / "sub" / "c.txt").symlink_to(outside / "secret.txt")
    return work


def _python38() -> str | None:
    candidates = [
        shutil.which("python3.8"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))),
    ]
    for exe in candidates:
        if exe and subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"]).returncode == 0:
            return exe
    return None


def _strip_ts(events: list[dict]) -> list[dict]:
    now = time.time()
    out = []
    for event in events:
        event = dict(event)
        if event["kind"] == "metric":
            ts = event.pop("ts")
            assert isinstance(ts, float) and now - 300 < ts <= now
        out.append(event)
    return out


EXPECTED_EVENTS = [
    {"kind": "parameters", "values": {"General/batch": 32, "General/layers": [64, 128]}},
    {"kind": "parameters", "values": {"General/extra": "x"}},
    {"kind": "parameters", "values": {"Args/opt": "sgd"}},
    {"kind": "metric", "title": "loss", "series": "train", "value": 0.5, "step": 1},
    {"kind": "metric", "title": "loss", "series": "train", "value": 2.0, "step": None},
    {"kind": "output", "name": "acc", "value": 0.9},
    {"kind": "output", "name": "summary", "value": {"best": 3, "tags": ["a"], "none": None}},
    {"kind": "artifact", "name": "weights", "path": "artifacts/weights/w.txt", "metadata": {"epoch": 3}},
    {"kind": "artifact", "name": "linked", "path": "artifacts/linked/link.txt", "metadata": {}},
    {"kind": "artifact", "name": "blob", "path": "artifacts/blob/blob.bin", "metadata": {}},
    {"kind": "artifact", "name": "stats", "path": "artifacts/stats/stats.json", "metadata": {}},
    {"kind": "artifact", "name": "tree", "path": "artifacts/tree/tree.zip", "metadata": {}},
]


def _check_run(run: Path, stdout: str) -> None:
    """Everything the TASK_BODY child reported, checked from the worker's side."""
    result = json.loads(stdout)
    assert result["identity"] == ["t-123", "train resnet", "vision", 2, False]
    assert result["cfg"] == {"lr": 0.5, "epochs": 3, "batch": 32, "layers": [64, 128]}
    assert type(result["cfg"]["epochs"]) is int  # the task's stored int wins over the script's 1.0
    # a default connected earlier is now the task's value, exactly as it will be on a re-run
    assert result["again"] == {"batch": 32, "layers": [64, 128], "extra": "x"}
    assert result["ns"] == {"seed": 7, "opt": "sgd"}
    assert result["lr"] == 0.5 and result["seed"] == 7 and result["missing"] == "dflt"
    assert result["params"] == {
        **TASK["parameters"],
        "General/batch": 32,
        "General/layers": [64, 128],
        "General/extra": "x",
        "Args/opt": "sgd",
    }
    assert result["configuration"] == TASK["configuration"]
    assert result["paths"] == {
        "file": "artifacts/weights/w.txt",
        "link": "artifacts/linked/link.txt",
        "bytes": "artifacts/blob/blob.bin",
        "json": "artifacts/stats/stats.json",
        "dir": "artifacts/tree/tree.zip",
    }

    events, errors = EventReader(run).poll_with_errors(final=True)
    assert errors == []
    assert _strip_ts(events) == EXPECTED_EVENTS
    values = events[0]["values"]
    assert type(values["General/batch"]) is int

    files = {e["name"]: resolve_artifact(run, e["path"]) for e in events if e["kind"] == "artifact"}
    assert files["weights"].read_text() == "weights v1"
    assert files["linked"].read_text() == "linked content"
    assert files["blob"].read_bytes() == b"\x00\x01binary"
    assert json.loads(files["stats"].read_text()) == {"a": 1, "b": [1.5, None]}
    with zipfile.ZipFile(files["tree"]) as archive:
        assert sorted(archive.namelist()) == ["a.txt", "sub/b.txt", "sub/c.txt"]
        assert archive.read("sub/c.txt") == b"linked content"  # a symlink inside is stored as content
    for path in (run / "artifacts").rglob("*"):
        assert not path.is_symlink(), path
        assert not path.name.startswith(".upload-"), path  # no temporary file left behind
    with open_artifact(run, "artifacts/weights/w.txt") as handle:
        assert handle.read() == b"weights v1"


# -- the protocol end to end ------------------------------------------------------------------------


def test_create_run_folder(tmp_path):
    run = create_run_folder(tmp_path / "runs" / "t-123-2", TASK)
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert (run / "artifacts").is_dir()
    assert (run / "events.jsonl").read_bytes() == b""
    assert json.loads((run / "task.json").read_text()) == {"protocol": 1, **TASK}
    with pytest.raises(FileExistsError, match="not empty"):
        create_run_folder(run, TASK)
    with pytest.raises(ValueError, match="task id"):
        create_run_folder(tmp_path / "other", {"name": "no id"})


def test_child_process_with_the_package(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    work = _work_folder(tmp_path)
    proc = _run_child([sys.executable, "-c", PACKAGE_IMPORT + TASK_BODY, str(work)], _env(run), tmp_path)
    _check_run(run, proc.stdout)


@pytest.mark.parametrize("python", ["current", "3.8"])
def test_standalone_file_needs_only_the_stdlib(tmp_path, python):
    """task_api.py loaded as a lone file by `python -I -S` (no trainyard, no site-packages)."""
    exe = sys.executable if python == "current" else _python38()
    if exe is None:
        pytest.skip("no Python 3.8 interpreter here")
    run = create_run_folder(tmp_path / "run", TASK)
    work = _work_folder(tmp_path)
    script = STANDALONE_IMPORT + TASK_BODY + STDLIB_CHECK
    proc = _run_child([exe, "-I", "-S", "-c", script, str(work), str(TASK_API_FILE)], _env(run), tmp_path)
    _check_run(run, proc.stdout)


def test_task_api_source_is_python38_syntax():
    source = TASK_API_FILE.read_text()
    ast.parse(source, feature_version=(3, 8))
    assert "from __future__ import annotations" in source
    imports = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports in task_api.py"
            imports.add((node.module or "").split(".")[0])
    assert imports <= set(sys.stdlib_module_names) | {"__future__"}, imports


def test_offline_mode(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(task_api, "_current", None)  # a fresh offline context, not one an earlier test filled
    monkeypatch.setattr(task_api, "_current_key", None)
    monkeypatch.delenv(task_api.ENV_RUN_DIR, raising=False)
    monkeypatch.delenv(task_api.ENV_TASK_ID, raising=False)
    task = current_task()
    assert task.offline and task.id == "offline" and task.run_dir is None
    assert current_task() is task
    defaults = {"lr": 0.1, "epochs": 2}
    cfg = task.connect(defaults)
    assert cfg == {"lr": 0.1, "epochs": 2} and cfg is defaults
    ns = task.connect(__import__("argparse").Namespace(seed=3), name="Args")
    assert vars(ns) == {"seed": 3}
    assert task.get_parameter("lr") == 0.1 and task.get_parameter("Args/seed") == 3
    task.log_metric("loss", "train", 1.25, step=4)
    task.set_output("acc", 0.75)
    source = tmp_path / "model.pt"
    source.write_bytes(b"weights")
    assert task.upload_artifact("model", source) == str(source)
    assert task.upload_artifact("raw", b"xyz") == "artifacts/raw/raw.bin"
    assert capsys.readouterr() == ("", "")
    assert [(m["title"], m["series"], m["value"], m["step"]) for m in task.get_metrics()] == [
        ("loss", "train", 1.25, 4)
    ]
    assert task.get_outputs() == {"acc": 0.75}
    assert task.get_artifacts() == {"model": str(source), "raw": b"xyz"}
    # validation is the same offline
    with pytest.raises(ValueError, match="invalid artifact name '../x'"):
        task.upload_artifact("../x", b"")
    with pytest.raises(TypeError, match="output 'bad'"):
        task.set_output("bad", {1, 2})
    # a changed environment gives a new context
    run = create_run_folder(tmp_path / "run", TASK)
    monkeypatch.setenv(task_api.ENV_RUN_DIR, str(run))
    online = current_task()
    assert online is not task and not online.offline and online.id == "t-123"


def test_offline_child_script_runs_unchanged(tmp_path):
    work = _work_folder(tmp_path)
    body = PACKAGE_IMPORT + "t = current_task(); assert t.offline\nt.log_metric('a', 'b', 1)\n"
    body += "print(t.connect({'lr': 0.1}), t.upload_artifact('w', sys.argv[1]))\n"
    proc = _run_child([sys.executable, "-c", "import sys\n" + body, str(work / "w.txt")], _env(None), tmp_path)
    assert proc.stdout == f"{{'lr': 0.1}} {work / 'w.txt'}\n"


def test_task_id_mismatch_is_refused(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    with pytest.raises(RuntimeError, match="TRAINYARD_TASK_ID=other"):
        _with_env(run, "other")


def _with_env(run: Path, task_id: str) -> RunContext:
    old = dict(os.environ)
    try:
        os.environ[task_api.ENV_RUN_DIR] = str(run)
        os.environ[task_api.ENV_TASK_ID] = task_id
        return RunContext(run)
    finally:
        os.environ.clear()
        os.environ.update(old)


# -- refusals in the task API --------------------------------------------------------------------------


@pytest.fixture
def online(tmp_path, monkeypatch):
    run = create_run_folder(tmp_path / "run", TASK)
    monkeypatch.setenv(task_api.ENV_RUN_DIR, str(run))
    monkeypatch.setenv(task_api.ENV_TASK_ID, TASK["id"])
    task = current_task()
    yield task, run
    task.close()


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "-x", "a b", "x" * 129, "é", "ok\n", 5])
def test_bad_artifact_names_are_refused(online, name):
    task, run = online
    with pytest.raises(ValueError, match="invalid artifact name"):
        task.upload_artifact(name, b"data")
    assert list((run / "artifacts").iterdir()) == []
    assert EventReader(run).poll_with_errors(final=True) == ([], [])


def test_refusals_in_the_task_api(online, tmp_path):
    task, run = online
    with pytest.raises(TypeError, match=r"output 'loss': value is not JSON-serialisable"):
        task.set_output("loss", float("nan"))
    with pytest.raises(TypeError, match=r"output 'obj': value is not JSON-serialisable"):
        task.set_output("obj", object())
    with pytest.raises(ValueError, match="output name"):
        task.set_output("", 1)
    with pytest.raises(ValueError, match="output name"):
        task.set_output("x" * 201, 1)
    with pytest.raises(TypeError, match="only paths .* bytes and JSON dict/list are accepted.*never pickled"):
        task.upload_artifact("model", object())
    with pytest.raises(TypeError, match="only paths"):
        task.upload_artifact("model", ("a", "b"))
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        task.upload_artifact("model", {"x": object()})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        task.upload_artifact("model", tmp_path / "missing.bin")
    with pytest.raises(TypeError, match="metadata"):
        task.upload_artifact("model", b"x", metadata={"bad": object()})
    with pytest.raises(TypeError, match="must be a number, got bool"):
        task.log_metric("loss", "train", True)
    with pytest.raises(TypeError, match="must be a number, got str"):
        task.log_metric("loss", "train", "1.0")
    with pytest.raises(ValueError, match="not a finite number"):
        task.log_metric("loss", "train", float("inf"))
    with pytest.raises(TypeError, match="step must be an int"):
        task.log_metric("loss", "train", 1.0, step=1.5)
    with pytest.raises(ValueError, match="metric title"):
        task.log_metric("", "train", 1.0)
    with pytest.raises(TypeError, match="metric series"):
        task.log_metric("loss", None, 1.0)
    with pytest.raises(ValueError, match="limit is 1048576"):
        task.set_output("huge", "x" * (2 << 20))
    with pytest.raises(TypeError, match="dict or argparse.Namespace"):
        task.connect([("lr", 1)])
    with pytest.raises(ValueError, match="parameter section"):
        task.connect({"lr": 1}, name="a/b")
    with pytest.warns(UserWarning, match="not a JSON value"):
        assert task.connect({"path": Path("/x")}) == {"path": Path("/x")}
    assert EventReader(run).poll_with_errors(final=True) == ([], [])
    assert list((run / "artifacts").iterdir()) == []


def test_reupload_replaces_the_file(online):
    task, run = online
    assert task.upload_artifact("cfg", {"v": 1}) == "artifacts/cfg/cfg.json"
    assert task.upload_artifact("cfg", {"v": 2}) == "artifacts/cfg/cfg.json"
    assert json.loads(resolve_artifact(run, "artifacts/cfg/cfg.json").read_text()) == {"v": 2}
    assert sorted(p.name for p in (run / "artifacts" / "cfg").iterdir()) == ["cfg.json"]


# -- concurrent writers -----------------------------------------------------------------------------

WRITER = """
import sys, threading
from trainyard.runtime.task_api import current_task
tag, threads, lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
task = current_task()
def work(thread):
    for i in range(lines):
        if i % 2:
            task.log_metric(f"{tag}-{thread}", "s", float(i), step=i)
        else:
            task.set_output(f"{tag}-{thread}-{i}", {"i": i, "pad": tag * (2000 + 37 * thread)})
workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
"""


def test_concurrent_writers_never_interleave(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    threads, lines = 4, 500
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, tag, str(threads), str(lines)], env=_env(run), cwd=tmp_path)
        for tag in ("P", "Q")
    ]
    reader = EventReader(run)
    events: list[dict] = []
    errors: list[str] = []
    while any(p.poll() is None for p in procs):  # read while they write: partial lines are common here
        new, bad = reader.poll_with_errors()
        events += new
        errors += bad
        time.sleep(0.005)
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    new, bad = reader.poll_with_errors(final=True)
    events += new
    errors += bad
    assert errors == []
    assert len(events) == 2 * threads * lines == reader.line_no
    outputs = {e["name"]: e["value"] for e in events if e["kind"] == "output"}
    assert len(outputs) == threads * lines
    for name, value in outputs.items():
        tag, thread, i = name.split("-")
        assert value == {"i": int(i), "pad": tag * (2000 + 37 * int(thread))}
    metrics = sorted((e["title"], e["step"]) for e in events if e["kind"] == "metric")
    expected = sorted((f"{tag}-{t}", i) for tag in "PQ" for t in range(threads) for i in range(1, lines, 2))
    assert metrics == expected
    for line in (run / "events.jsonl").read_bytes().splitlines():
        json.loads(line)


def test_threads_in_one_process_share_the_context(online):
    task, run = online
    barrier = threading.Barrier(6)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(500):
            task.log_metric("t", str(n), i, step=i)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    events, errors = EventReader(run).poll_with_errors()
    assert errors == [] and len(events) == 3000
    for n in range(6):
        assert [e["step"] for e in events if e["series"] == str(n)] == list(range(500))


def test_after_fork_the_child_writes_too(online):
    task, run = online
    task.set_output("parent", 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            task.set_output("child", 2)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    task.set_output("parent-again", 3)
    events = EventReader(run).poll()
    assert [(e["name"], e["value"]) for e in events] == [("parent", 1), ("child", 2), ("parent-again", 3)]


# -- the reader -------------------------------------------------------------------------------------


def _append(run: Path, data: bytes) -> None:
    with open(run / "events.jsonl", "ab") as handle:
        handle.write(data)


def test_partial_trailing_line_waits_for_its_end(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    reader = EventReader(run)
    assert reader.poll() == []
    line = json.dumps({"kind": "output", "name": "greeting", "value": "héllo"}, ensure_ascii=False).encode()
    cut = line.index("é".encode()) + 1  # in the middle of a two-byte character
    first = b'{"kind":"output","name":"a","value":1}\n'
    _append(run, first + line[:cut])
    assert reader.poll() == [{"kind": "output", "name": "a", "value": 1}]
    assert reader.poll() == []
    _append(run, line[cut:])
    assert reader.poll() == []  # still no newline
    _append(run, b"\n")
    assert reader.poll() == [{"kind": "output", "name": "greeting", "value": "héllo"}]
    assert reader.offset == len(first) + len(line) + 1 and reader.line_no == 2
    # once the task has exited, a last line without newline is read when it is valid ...
    _append(run, b'{"kind":"output","name":"last","value":true}')
    assert reader.poll_with_errors() == ([], [])
    assert reader.poll_with_errors(final=True) == ([{"kind": "output", "name": "last", "value": True}], [])
    # ... and reported when it is cut off
    _append(run, b'\n{"kind":"output","name":"cut","va')
    events, errors = reader.poll_with_errors(final=True)
    assert events == [] and len(errors) == 1
    assert errors[0].startswith("line 4: not valid JSON") and errors[0].endswith("(line has no final newline)")
    _append(run, b'\n{"kind":"output","name":"next","value":5}\n')  # a late writer: numbering stays right
    assert reader.poll_with_errors() == ([{"kind": "output", "name": "next", "value": 5}], [])
    assert reader.line_no == 5


MALFORMED = [
    (b'{"kind":"metric","title":"loss","series":"train","value":1,"step":0,"ts":1.5}', None),
    (b"{not json", "not valid JSON"),
    (b'{"kind":"bogus"}', "unknown event kind 'bogus'"),
    (b'{"kind":"metric","title":5,"series":"s","value":1}', "'title' must be a string"),
    (b'{"kind":"metric","title":"t","series":"s","value":NaN}', "NaN is not a JSON number"),
    (b'{"kind":"metric","title":"t","series":"s","value":1e999}', "'value' must be a finite number, got inf"),
    (b'{"kind":"metric","title":"t","series":"s","value":true}', "'value' must be a number, got True"),
    (b'{"kind":"metric","title":"t","series":"s","value":1,"step":"3"}', "'step' must be an int or null"),
    (b'{"kind":"artifact","name":"../evil","path":"artifacts/../evil/x"}', "invalid artifact name '../evil'"),
    (b'{"kind":"artifact","name":"ok","path":"artifacts/other/x"}', "is not artifacts/ok/<filename>"),
    (b'{"kind":"artifact","name":"ok","path":"artifacts/ok/../../x"}', "is not artifacts/ok/<filename>"),
    (b'{"kind":"output","name":"x"}', "output event without 'value'"),
    (b'{"kind":"output","name":"","value":1}', "'name' must be a string of 1 to 200"),
    (b"[1, 2]", "an event must be a JSON object, got list"),
    (b'{"kind":"parameters","values":{"nosection":1}}', "malformed parameter key 'nosection'"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"", None),  # blank: skipped, not an error
    (b'{"kind":"output","name":"ok","value":{"nested":[1,2.5,null]}}', None),
    (b'{"kind":"output","name":"big","value":"' + b"x" * (1 << 20) + b'"}', "longer than 1048576 bytes"),
    (b'{"kind":"parameters","values":{"Args/lr":0.1,"General/n":3},"extra":"ignored"}', None),
    (b'{"kind":"artifact","name":"m.v1","path":"artifacts/m.v1/model.pt"}', None),
]


def test_malformed_lines_are_reported_with_line_numbers(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    _append(run, b"\n".join(line for line, _ in MALFORMED) + b"\n")
    events, errors = EventReader(run).poll_with_errors()
    assert events == [
        {"kind": "metric", "title": "loss", "series": "train", "value": 1.0, "step": 0, "ts": 1.5},
        {"kind": "output", "name": "ok", "value": {"nested": [1, 2.5, None]}},
        {"kind": "parameters", "values": {"Args/lr": 0.1, "General/n": 3}},
        {"kind": "artifact", "name": "m.v1", "path": "artifacts/m.v1/model.pt", "metadata": {}},
    ]
    expected = [(n, why) for n, (_, why) in enumerate(MALFORMED, start=1) if why]
    assert len(errors) == len(expected)
    for error, (n, why) in zip(errors, expected):
        assert error.startswith(f"line {n}: ") and why in error, (error, n, why)
        assert "\n" not in error and len(error) < 300


def test_long_lines_are_never_held_whole(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    reader = EventReader(run, max_line_bytes=100)
    _append(run, b'{"kind":"output","name":"a","value":1}\n')
    for _ in range(50):  # one 10 kB line arriving in pieces
        _append(run, b"y" * 200)
        assert reader.poll_with_errors()[1] == []
        assert len(reader._partial) <= 100
    _append(run, b'\n{"kind":"output","name":"b","value":2}\n')
    events, errors = reader.poll_with_errors()
    assert errors == ["line 2: longer than 100 bytes, skipped"]
    assert events == [{"kind": "output", "name": "b", "value": 2}]


def test_missing_events_file_reads_as_empty(tmp_path):
    assert EventReader(tmp_path / "nowhere").poll_with_errors(final=True) == ([], [])


# -- hostile artifact paths -------------------------------------------------------------------------


@pytest.fixture
def hostile_run(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (run / "artifacts" / "ok").mkdir()
    (run / "artifacts" / "ok" / "f.txt").write_text("fine")
    (run / "artifacts" / "evil").mkdir()
    (run / "artifacts" / "evil" / "passwd").symlink_to("/etc/passwd")
    (run / "artifacts" / "evil" / "secret.txt").symlink_to(outside / "secret.txt")
    (run / "artifacts" / "evil" / "inside.txt").symlink_to(run / "artifacts" / "ok" / "f.txt")
    (run / "artifacts" / "dirlink").symlink_to(outside)
    os.mkfifo(run / "artifacts" / "ok" / "pipe")
    return run


@pytest.mark.parametrize(
    "rel, why",
    [
        ("../../etc/passwd", "escapes the run folder"),
        ("/etc/passwd", "escapes the run folder"),
        ("artifacts/ok/../../task.json", "escapes the run folder"),
        ("artifacts/../../outside/secret.txt", "escapes the run folder"),
        ("task.json", "escapes the run folder"),
        ("events.jsonl", "escapes the run folder"),
        ("artifacts/evil/passwd", "escapes the run folder"),
        ("artifacts/evil/secret.txt", "escapes the run folder"),
        ("artifacts/evil/inside.txt", "escapes the run folder"),  # any symlink, even to a file inside
        ("artifacts/dirlink/secret.txt", "escapes the run folder"),
        ("artifacts/ok", "not a regular file"),
        ("artifacts/ok/pipe", "not a regular file"),
        ("artifacts/ok/missing.txt", "does not exist"),
        ("", "not a valid path"),
        ("artifacts/ok/f.txt\0", "not a valid path"),
    ],
)
def test_resolve_artifact_refuses_hostile_paths(hostile_run, rel, why):
    with pytest.raises(ValueError, match=why):
        resolve_artifact(hostile_run, rel)
    with pytest.raises(ValueError):
        open_artifact(hostile_run, rel)


def test_resolve_artifact_accepts_files_inside(hostile_run):
    path = resolve_artifact(hostile_run, "artifacts/ok/f.txt")
    assert path == (hostile_run / "artifacts" / "ok" / "f.txt").resolve() and path.is_absolute()
    assert resolve_artifact(hostile_run, Path("artifacts/./ok/f.txt")) == path
    with open_artifact(hostile_run, "artifacts/ok/f.txt") as handle:
        assert handle.read() == b"fine"


def test_artifacts_folder_replaced_by_a_symlink_is_refused(tmp_path):
    run = create_run_folder(tmp_path / "run", TASK)
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "f").write_text("secret")
    (run / "artifacts").rmdir()
    (run / "artifacts").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes the run folder"):
        resolve_artifact(run, "artifacts/x/f")
    with pytest.raises(ValueError, match="escapes the run folder"):
        open_artifact(run, "artifacts/x/f")


def test_the_runtime_on_a_task_path_needs_only_the_stdlib(tmp_path):
    """worker/tasklib.py links the runtime (and, for environments without trainyard, the stand-in
    package) into the run folder: nothing is copied, and a bare interpreter runs the API and the runners."""
    from trainyard.worker import tasklib

    run = create_run_folder(tmp_path / "run", TASK)
    lib = tasklib.link(run, standalone=True)
    assert (lib / tasklib.RUNTIME_NAME).resolve() == TASK_API_FILE.parent
    assert not any(p.is_file() and not p.is_symlink() for p in lib.rglob("*") if lib in p.parents)
    env = {**_env(run), "PYTHONPATH": str(lib)}
    script = (
        "import sys\nfrom trainyard import current_task\nimport trainyard_runtime.jobrun, trainyard_runtime.funcstep\n"
        "current_task().set_output('ok', 1)\n"
        "foreign = {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}\n"
        "assert foreign == {'trainyard', 'trainyard_runtime'}, foreign\n"
    )
    _run_child([sys.executable, "-S", "-c", script], env, tmp_path)
    assert EventReader(run).poll_with_errors(final=True) == ([{"kind": "output", "name": "ok", "value": 1}], [])


def test_connect_updates_the_given_dict_and_namespace_in_place(monkeypatch, tmp_path):
    """Code written the ClearML way calls ``task.connect(params)`` without using the result: the
    dict (or argparse namespace) it passed must carry the task's values afterwards (issue 14, 2h)."""
    import argparse

    monkeypatch.setattr(task_api, "_current", None)
    monkeypatch.setattr(task_api, "_current_key", None)
    monkeypatch.setenv(task_api.ENV_RUN_DIR, str(create_run_folder(tmp_path / "run", TASK)))
    task = current_task()
    params = {"lr": 0.1, "epochs": 1, "fresh": "kept"}
    assert task.connect(params) is params
    assert params == {"lr": 0.5, "epochs": 3, "fresh": "kept"}
    args = argparse.Namespace(seed=1, opt="sgd")
    assert task.connect(args, name="Args") is args
    assert vars(args) == {"seed": 7, "opt": "sgd"}
