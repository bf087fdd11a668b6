"""The web app in a real headless Chromium (Debian's `chromium`, driven by Playwright; no browser
download) against `trainyard web` as a real process, real Redis and real workers.

Screenshots of the main pages go to ``$TRAINYARD_SCREENSHOTS`` (the README's come from
``TRAINYARD_SCREENSHOTS=docs/screenshots python -m pytest tests/test_web_e2e.py``), else to a
temporary folder. Tasks wait on gate files the test creates, so every state the test looks for
is held until the browser has seen it: nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from webserver import WebServer
from workerproc import WorkerProcess, wait_worker_registered

from trainyard import Queue, Task
from trainyard.queues import keys, workers
from trainyard.queues.task import create_many
from trainyard.web import auth

CHROMIUM = os.environ.get("TRAINYARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("TRAINYARD_REQUIRE_BROWSER"):
            pytest.fail(f"TRAINYARD_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        pytest.skip("no Chromium (apt-get install chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("web-e2e")
    artifacts = home / "artifacts"
    env = {"TRAINYARD_REDIS_URL": redis_server.url, "TRAINYARD_HOME": str(home), "TRAINYARD_ARTIFACTS": str(artifacts)}
    server = WebServer(env, home).start()
    shots = Path(os.environ.get("TRAINYARD_SCREENSHOTS") or home / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    yield SimpleNamespace(server=server, url=server.url, artifacts=artifacts, shots=shots)
    server.stop()


@pytest.fixture
def page(browser, stack, conn):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, errors  # no JavaScript error on any page the test visited


def login(page, stack, conn, role: str = "admin") -> str:
    token, _ = auth.create_token(conn, "alice", role)
    page.goto(stack.url + "/")
    page.wait_for_url("**/login")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector(f"#who:has-text('alice ({role})')")
    return token


def shot(page, stack, name: str, full: bool = False) -> None:
    page.screenshot(path=str(stack.shots / f"{name}.png"), full_page=full)


def worker(stack, *args: str, env: dict | None = None) -> WorkerProcess:
    return WorkerProcess(*args, env={"TRAINYARD_ARTIFACTS": str(stack.artifacts), **(env or {})})


TRAIN = textwrap.dedent(
    """
    import argparse, math, pathlib, time
    from trainyard import current_task
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float)
    parser.add_argument("--gate")
    args = parser.parse_args()
    task = current_task()
    print(f"training with lr={args.lr}", flush=True)
    for step in range(20):
        task.log_metric("loss", "train", math.exp(-step * args.lr) + 0.05, step=step)
        task.log_metric("loss", "val", math.exp(-step * args.lr * 0.8) + 0.1, step=step)
        task.log_metric("accuracy", "val", 1 - math.exp(-step * args.lr), step=step)
    print("waiting for gate", flush=True)
    gate = pathlib.Path(args.gate)
    while not gate.exists():
        time.sleep(0.05)
    task.set_output("accuracy", 0.93)
    task.upload_artifact("summary", {"best_loss": 0.06})
    print("training done", flush=True)
    """
)


def test_login_clone_edit_enqueue_and_watch_it_live(page, stack, conn, tmp_path):
    Queue.create("cpu")
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    gate = tmp_path / "gate"
    template = Task.create("train", "vision", script=str(script), parameters={"Args/lr": 0.1, "Args/gate": str(gate)})
    page.goto(stack.url + "/")
    page.wait_for_url("**/login")
    shot(page, stack, "login")
    login(page, stack, conn)
    page.wait_for_selector(f"#tasks-table tr[data-task='{template.id}']")

    # clone the template, change a parameter, enqueue the clone: all in the browser
    page.click(f"#tasks-table tr[data-task='{template.id}'] button[data-action=clone]")
    page.fill(".modal input[name=name]", "train lr=0.5")
    page.click(".modal button[type=submit]")
    page.wait_for_url("**/#/tasks/*")
    clone_id = page.url.rsplit("/", 1)[-1]
    assert clone_id != template.id
    row = page.locator(".params tr", has=page.locator("input.key[value='Args/lr']"))
    row.locator("input.val").fill("0.5")
    page.click("#save-params")
    page.wait_for_selector(".toast:has-text('parameters saved')")
    assert Task.get(clone_id).get_parameter("Args/lr") == 0.5

    with worker(stack, "--queue", "cpu", "--name", "e2e-cpu"):
        page.click("h1 button[data-action=enqueue]")
        page.select_option(".modal select[name=queue]", "cpu")
        page.click(".modal button[type=submit]")
        # status and log change live, without a reload
        page.wait_for_selector("#task-status [data-status=running]")
        page.wait_for_selector("#log:has-text('waiting for gate')")
        assert "training with lr=0.5" in page.inner_text("#log")
        page.wait_for_selector("#charts .chart[data-title=loss] canvas")
        page.wait_for_selector("#charts .chart[data-title=accuracy] canvas")
        legend = page.inner_text("#charts .chart[data-title=loss]")
        assert "train" in legend.lower() and "val" in legend.lower()
        shot(page, stack, "task-running", full=True)
        gate.touch()
        page.wait_for_selector("#task-status [data-status=completed]")
        page.wait_for_selector("#log:has-text('training done')")
        page.wait_for_selector("#artifacts a:has-text('download')")
        page.wait_for_selector("#outputs:has-text('0.93')")
        shot(page, stack, "task", full=True)
        href = page.get_attribute("#artifacts a", "href")
        download = page.request.get(stack.url + href)
        assert download.ok and json.loads(download.body()) == {"best_loss": 0.06}
        whole_log = page.request.get(stack.url + page.get_attribute("#log-file", "href"))
        assert whole_log.ok and b"training done" in whole_log.body()

        page.goto(stack.url + "/#/tasks")
        page.wait_for_selector(f"#tasks-table tr[data-task='{clone_id}'] [data-status=completed]")
        shot(page, stack, "tasks")
        page.goto(stack.url + "/#/workers")
        page.wait_for_selector("#workers-table tr[data-worker=e2e-cpu]")
        shot(page, stack, "workers")


def test_abort_a_running_task_then_limit_and_delete_its_queue(page, stack, conn):
    Queue.create("cpu")
    loop = "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.2)"
    task = Task.create("forever", "web", command=["python", "-c", loop])
    login(page, stack, conn)
    with worker(stack, "--queue", "cpu", "--name", "e2e-abort", "--grace", "2"):
        task.enqueue("cpu")
        page.goto(f"{stack.url}/#/tasks/{task.id}")
        page.wait_for_selector("#log:has-text('started')")
        page.wait_for_selector("#task-status [data-status=running]")
        page.click("h1 button[data-action=abort]")
        page.wait_for_selector("#task-status [data-status=aborted]")
    assert Task.get(task.id).status.value == "aborted"

    # the queue's own page: limit it, then delete it (confirmed in the browser's dialog)
    page.goto(f"{stack.url}/#/queues/cpu")
    page.click("h1 button[data-action=limit]")
    page.fill(".modal input[name=max_running]", "2")
    page.click(".modal button[type=submit]")
    page.wait_for_selector(".facts dd:text-is('2')")
    assert Queue("cpu").info().max_running == 2
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("h1 button[data-action=delete]")
    page.wait_for_url("**/#/queues")
    page.wait_for_selector("text=no queues yet")


PLOTS = textwrap.dedent(
    """
    import numpy as np
    from trainyard.clearml import Logger, Task

    Task.init("web", "plots")
    logger = Logger.current_logger()
    logger.report_image("sample", "red", matrix=np.full((8, 12, 3), (255, 0, 0), dtype=np.uint8))
    logger.report_table("results", "epochs", table_plot=[["epoch", "loss"], [0, 1.0], ["<b>bold</b>", "a,\\"b\\""]])
    logger.report_histogram("weights", "layer1", values=[3, 1, 4], xlabels=["a", "b", "c"], xaxis="bin")
    logger.report_plotly("roc", "val", {"data": [
        {"type": "scatter", "mode": "lines", "x": [0, 0.5, 1], "y": [0, 0.8, 1], "name": "model"},
        {"type": "histogram", "x": [1, 2, 2, 3, 3, 3], "name": "scores"},
        {"type": "heatmap", "z": [[1]]},
    ], "layout": {"title": {"text": "ROC"}}})
    """
)


def test_plots_a_task_reported_are_shown_on_its_page(page, stack, conn, tmp_path):
    Queue.create("cpu", exist_ok=True)
    script = tmp_path / "plots.py"
    script.write_text(PLOTS)
    task = Task.create("plots", "web", script=str(script))
    login(page, stack, conn)
    with worker(stack, "--queue", "cpu", "--name", "e2e-plots"):
        task.enqueue("cpu")
        page.goto(f"{stack.url}/#/tasks/{task.id}")
        page.wait_for_selector("#task-status [data-status=completed]")
        page.wait_for_selector("#plots figure[data-artifact=image-sample-red] img")
    size = page.eval_on_selector(
        "#plots figure[data-artifact=image-sample-red] img",
        "img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])",
    )
    assert size == [12, 8]  # the image itself reached the browser, not a broken link
    assert "sample / red" in page.inner_text("#plots")
    # a table: an HTML table of text (a cell holding markup stays text; quoted commas stay one cell)
    page.wait_for_selector("#plots figure[data-artifact=table-results-epochs][data-ready] table")
    rows = page.eval_on_selector_all(
        "#plots figure[data-artifact=table-results-epochs] tr",
        "trs => trs.map(tr => [...tr.children].map(c => c.textContent))",
    )
    assert rows == [["epoch", "loss"], ["0", "1.0"], ["<b>bold</b>", 'a,"b"']]
    assert page.locator("#plots figure[data-artifact=table-results-epochs] td b").count() == 0
    # a histogram and a plotly figure: uPlot charts of their drawable traces (the heatmap is left out)
    for name, series in (("plot-weights-layer1", ["layer1"]), ("plot-roc-val", ["model", "scores"])):
        page.wait_for_selector(f"#plots figure[data-artifact={name}][data-ready] .uplot canvas")
        legend = page.eval_on_selector_all(
            f"#plots figure[data-artifact={name}] .u-legend .u-series .u-label", "els => els.map(e => e.textContent)"
        )
        assert legend[1:] == series, legend  # the first is the x series
    assert page.inner_text("#plots figure[data-artifact=plot-roc-val] .u-title") == "ROC"
    page.screenshot(path=str(stack.shots / "task-plots.png"), full_page=True)


def test_read_only_user_sees_no_admin_buttons_and_names_stay_text(page, stack, conn):
    Queue.create("cpu")
    sneaky = Task.create("<img src=x onerror=window.pwned=1><b>bold</b>", "web", command=["true"])
    login(page, stack, conn, role="read")
    page.wait_for_selector("#tasks-table")
    assert not page.locator("#tasks-table button[data-action=enqueue]").is_visible()
    assert page.evaluate("document.body.classList.contains('readonly')")
    row = page.locator(f"#tasks-table tr[data-task='{sneaky.id}']")
    assert "<b>bold</b>" in row.inner_text() and row.locator("b, img").count() == 0  # shown as text, never as HTML
    assert page.evaluate("window.pwned === undefined")


def _gpus(path: Path, utilisation: list[int]) -> None:
    """Stand-in GPUs (no NVIDIA GPU here): the worker's NVML reads this file at every heartbeat."""
    gpus = [
        {"name": "Stand-in A100", "memory_total_mb": 40960, "memory_used_mb": 8192 * (i + 1), "utilization": u}
        for i, u in enumerate(utilisation)
    ]
    path.write_text(json.dumps(gpus))


def test_worker_page_shows_live_gpu_figures_and_drains(page, stack, conn, tmp_path):
    Queue.create("gpu")
    gpu_file = tmp_path / "gpus.json"
    _gpus(gpu_file, [30, 55])
    standin = {"TRAINYARD_NVML": "standin", "TRAINYARD_STANDIN_GPUS_FILE": str(gpu_file)}
    login(page, stack, conn)
    agent = worker(stack, "--queue", "gpu", "--gpus", "0,1", "--name", "e2e-gpu", env=standin)
    with agent:
        wait_worker_registered(conn, "e2e-gpu")
        page.goto(stack.url + "/#/workers")
        page.click("#workers-table tr[data-worker=e2e-gpu] a")
        page.wait_for_selector("#worker-gpus .gpu[data-gpu='0']:has-text('util 30%')")
        page.wait_for_selector("#worker-charts .chart[data-title='GPU utilisation'] canvas")
        _gpus(gpu_file, [85, 55])  # the next heartbeat carries it to the open page
        page.wait_for_selector("#worker-gpus .gpu[data-gpu='0']:has-text('util 85%')")
        assert "mem 16384/40960 MB" in page.inner_text("#worker-gpus .gpu[data-gpu='1']")
        shot(page, stack, "worker")
        page.click("h1 button[data-action=drain]")  # idle: it finishes nothing and exits
        page.wait_for_selector("#worker-gone")
        assert agent.wait(timeout=30) == 0


def _statuses(page) -> dict[str, str]:
    return json.loads(page.get_attribute("#dag", "data-statuses") or "{}")


def _wait_statuses(page, expected: dict[str, str]) -> None:
    page.wait_for_function(
        "exp => { const s = JSON.parse(document.getElementById('dag')?.dataset.statuses || '{}');"
        " return Object.entries(exp).every(([k, v]) => s[k] === v); }",
        arg=expected,
    )


def _pipeline_file(gates: Path) -> str:
    """Three jobs in a row; each waits for its gate file, so the test decides when it ends."""
    jobs = []
    for name, need in (("prepare", None), ("train", "prepare"), ("evaluate", "train")):
        gate = gates / f"{name}.go"
        jobs.append(f"  {name}:")
        if need:
            jobs.append(f"    needs: [{need}]")
        jobs += ["    steps:", f"      - run: echo {name} started; while [ ! -e {gate} ]; do sleep 0.05; done"]
    return "\n".join(["name: gated", "project: demo", "queue: cpu", "jobs:", *jobs]) + "\n"


def _colour(page, step: str) -> str:
    return page.evaluate(f"TY_CY.getElementById('{step}').style('background-color')")


def test_editor_validates_as_you_type_then_the_dag_colours_step_by_step(page, stack, conn, tmp_path):
    Queue.create("cpu")
    Queue.create("services")
    good = _pipeline_file(tmp_path)
    login(page, stack, conn)
    page.goto(stack.url + "/#/editor")
    page.wait_for_selector("#editor-ok")  # the sample file is valid
    bad = good.replace("needs: [prepare]", "needs: [prep]")
    line = bad.splitlines().index("    needs: [prep]") + 1
    page.fill("#yaml", bad)
    error = page.wait_for_selector(f"#editor-errors li[data-line='{line}']")
    assert "prep" in error.inner_text() and error.inner_text().startswith(f"line {line}:")
    assert page.eval_on_selector("#editor-errors", "el => getComputedStyle(el).color") == "rgb(214, 64, 64)"  # red
    assert page.get_attribute(f".editor .gutter div:nth-child({line})", "class") == "bad"
    shot(page, stack, "editor-error")
    page.fill("#yaml", good.replace("jobs:", "jobz:"))
    page.wait_for_selector("#editor-errors li:has-text('jobz')")
    page.fill("#yaml", good)
    page.wait_for_selector("#editor-ok")

    with (
        worker(stack, "--queue", "cpu", "--name", "e2e-steps"),
        worker(stack, "--services-mode", "2", "--queue", "services", "--name", "e2e-svc"),
    ):
        page.click("#create-run")
        page.wait_for_url("**/#/runs/*")
        _wait_statuses(page, {"prepare": "running", "train": "pending", "evaluate": "pending"})
        assert _colour(page, "prepare") == "rgb(229,155,18)" and _colour(page, "train") == "rgb(184,191,204)"
        shot(page, stack, "pipeline-running")
        (tmp_path / "prepare.go").touch()
        _wait_statuses(page, {"prepare": "completed", "train": "running", "evaluate": "pending"})
        assert _colour(page, "prepare") == "rgb(46,158,87)" and _colour(page, "train") == "rgb(229,155,18)"
        (tmp_path / "train.go").touch()
        _wait_statuses(page, {"prepare": "completed", "train": "completed", "evaluate": "running"})
        (tmp_path / "evaluate.go").touch()
        _wait_statuses(page, {"prepare": "completed", "train": "completed", "evaluate": "completed"})
        page.wait_for_selector("#run-status [data-status=completed]")
        page.wait_for_selector("#step-panel h2:has-text('evaluate') [data-status=completed]")  # the side panel too
        shot(page, stack, "pipeline-done")
        page.click("#steps-table tr[data-step=train] a")  # a step's task page, from the run
        page.wait_for_selector("#log:has-text('train started')")
    page.goto(stack.url + "/#/pipelines")
    page.wait_for_selector("#files-table tr[data-pipeline=gated]")  # registered by Create and run
    shot(page, stack, "pipelines")


def test_run_page_shows_each_steps_test_results(page, stack, conn, tmp_path):
    """A pipeline-file step's JUnit report (a real pytest run) with a failing test: the run page names
    the failing test and its message, per step and in the run's totals."""
    from test_pipefile_junit import pipeline

    from trainyard.controller.files import load_text, run_here

    run = run_here(load_text(pipeline(fail=True), "junit.yaml"), conn=conn)
    assert run.status == "failed"
    login(page, stack, conn, "read")
    page.goto(stack.url + f"/#/runs/{run.id}")
    page.wait_for_selector("#run-tests:has-text('tests: 1 passed, 1 failed, 1 skipped')")
    report = page.wait_for_selector("#step-panel .test-report[data-step='run tests']")  # the failed job, shown
    assert "run tests: 1 passed, 1 failed, 1 skipped" in report.inner_text()
    failing = page.wait_for_selector("#step-panel .test-failures li[data-test=test_div]")
    assert "test_unit.test_div" in failing.inner_text() and "ZeroDivisionError" in failing.inner_text()
    assert page.inner_text("#steps-table tr[data-step=unit] .tests-cell") == "1 passed, 1 failed, 1 skipped"
    shot(page, stack, "pipeline-tests")


# -- scale -------------------------------------------------------------------------------------
def _seed(conn, tasks: int, fleet: int) -> list[str]:
    """10,000 tasks on one queue (bulk, one transaction per 2,000) and 100 live workers."""
    Queue.create("bulk")
    for start in range(0, tasks, 2000):
        specs = [{"name": f"sweep-{i}", "command": ["true"], "project": "scale"} for i in range(start, start + 2000)]
        create_many(specs, queue="bulk")
    names = [f"node-{i:03d}" for i in range(fleet)]
    with conn.pipeline(transaction=False) as pipe:
        for i, name in enumerate(names):
            info = workers.WorkerInfo(
                name=name,
                host=f"gpu-host-{i // 4:02d}",
                pid=1000 + i,
                queues=["bulk"],
                gpus=[0, 1, 2, 3],
                state="busy" if i % 3 else "idle",
                stats={
                    "cpu_percent": float(i % 100),
                    "memory": {"total_mb": 256000, "used_mb": 64000, "percent": 25.0},
                    "gpus": [
                        {
                            "index": g,
                            "name": "NVIDIA A100-SXM4-80GB",
                            "utilization_pct": (i * 7 + g * 23) % 100,
                            "memory_used_mb": 20000 + g * 10000,
                            "memory_total_mb": 81920,
                        }
                        for g in range(4)
                    ],
                },
            )
            pipe.set(keys.worker(name), info.model_dump_json(), px=600_000)  # stand-ins: no heartbeats
            pipe.sadd(keys.WORKERS, name)
        pipe.execute()
    return names


def test_usable_with_10000_tasks_and_100_workers(page, stack, conn):
    names = _seed(conn, 10_000, 100)
    login(page, stack, conn)
    page.wait_for_selector("#tasks-table")
    assert page.locator("#tasks-table tbody tr").count() == 50
    assert page.inner_text(".page-range") == "1–50 of 10000"
    page.wait_for_selector("#counts:has-text('10000 queued')")
    page.click("text=Next ›")
    page.wait_for_selector(".page-range:text-is('51–100 of 10000')")
    shot(page, stack, "tasks-10000")

    page.goto(stack.url + "/#/queues/bulk?offset=9950")
    page.wait_for_selector(".page-range:text-is('9951–10000 of 10000')")
    assert page.locator("#queue-entries tbody tr").count() == 50
    last = page.get_attribute("#queue-entries tbody tr:last-child", "data-task")
    page.click("#queue-entries tbody tr:last-child button:text-is('Top')")  # the 10,000th moves to the front
    page.wait_for_selector(".toast:has-text('moved')")
    assert Queue("bulk").entries(0, 1)[0].task_id == last
    page.goto(stack.url + "/#/queues/bulk")
    page.wait_for_selector(f"#queue-entries tbody tr:first-child[data-task='{last}']")
    page.goto(stack.url + "/#/workers")
    page.wait_for_selector(f"#workers-table tr[data-worker='{names[0]}']")
    assert page.locator("#workers-table tbody tr").count() == 50
    assert page.locator(f"#workers-table tr[data-worker='{names[1]}'] .gpu").count() == 4
    assert page.inner_text(".page-range") == "1–50 of 100"
    shot(page, stack, "workers-100")

    # the API answers pages, never everything: bounded answers at any depth
    api = page.request
    for path in ("/api/tasks?offset=9990", "/api/tasks", "/api/queues/bulk?offset=9000", "/api/workers?offset=50"):
        resp = api.get(stack.url + path)
        assert resp.ok and len(resp.body()) < 120_000, (path, len(resp.body()))
    assert len(api.get(stack.url + "/api/tasks?offset=9990").json()["items"]) == 10
    assert api.get(stack.url + "/api/tasks?limit=501").status == 422
