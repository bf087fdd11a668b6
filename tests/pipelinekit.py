"""Template tasks and helpers for the pipeline tests."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import redis

from trainyard import Task
from trainyard.controller import run_store
from trainyard.controller.model import PipelineRun
from trainyard.queues import keys

PREP = textwrap.dedent(
    """
    import json, os, tempfile
    from trainyard import current_task
    task = current_task()
    rows = task.get_parameter("Args/rows")
    path = os.path.join(tempfile.mkdtemp(), "data.json")
    with open(path, "w") as f:
        json.dump(list(range(rows)), f)
    task.upload_artifact("dataset", path)
    task.set_output("rows", rows)
    print("prep wrote", rows, "rows", flush=True)
    """
)

PROCESS = textwrap.dedent(
    """
    import argparse, json, os, time
    from trainyard import current_task
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset")
    parser.add_argument("--scale", type=float)
    parser.add_argument("--wait-for")
    args = parser.parse_args()
    if args.wait_for:
        print("process waiting", flush=True)
        while not os.path.exists(args.wait_for):
            time.sleep(0.02)
    if os.environ.get("FAIL_UNLESS") and not os.path.exists(os.environ["FAIL_UNLESS"]):
        raise SystemExit("process: flag file missing")
    data = json.load(open(args.dataset))
    task = current_task()
    print(f"process got dataset={args.dataset} scale={args.scale!r}", flush=True)
    task.set_output("total", sum(data) * args.scale)
    task.set_output("scale_type", type(task.get_parameter("Args/scale")).__name__)
    """
)

TRAIN = textwrap.dedent(
    """
    from trainyard import current_task
    task = current_task()
    params = task.get_parameters()
    print("train params", {k: (v, type(v).__name__) for k, v in sorted(params.items())}, flush=True)
    task.set_output("seen", {k: type(v).__name__ for k, v in params.items()})
    task.set_output("total", params["Args/total"])
    """
)


def templates(folder: Path, project: str = "tpl") -> dict[str, Task]:
    """Three draft template tasks (standalone scripts)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, source, params in (
        ("prep", PREP, {"Args/rows": 3}),
        ("process", PROCESS, {"Args/dataset": "", "Args/scale": 1.0, "Args/wait-for": None}),
        ("train", TRAIN, {"Args/total": 0, "Args/epochs": 1, "Args/lr": 0.1, "Args/layers": [1]}),
    ):
        script = folder / f"{name}.py"
        script.write_text(source)
        out[name] = Task.create(name, project, script=script, detect_repository=False, parameters=params)
    return out


def wait_run(conn: redis.Redis, run_id: str, predicate, timeout: float = 120) -> PipelineRun:
    """Block on the event stream until the stored run satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while time.monotonic() < deadline:
        try:
            run = run_store.load(conn, run_id)
            if predicate(run):
                return run
        except Exception:  # not saved yet
            pass
        reply = conn.xread({keys.EVENTS: cursor}, block=500, count=1000)
        for _, entries in reply or []:
            cursor = entries[-1][0]
    raise AssertionError(f"run {run_id} never got there: {run_store.load(conn, run_id)}")
