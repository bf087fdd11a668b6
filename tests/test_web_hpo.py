"""The study and compare pages in a real headless Chromium (as tests/test_web_e2e.py: Debian's
chromium driven by Playwright, `trainyard web` as a real process, a study run by real trials).

Screenshots go to ``$TRAINYARD_SCREENSHOTS`` like the other browser tests (``study.png``,
``compare.png`` in the README).
"""

from __future__ import annotations

import sys
import textwrap

from test_web_e2e import browser, login, page, shot, stack  # noqa: F401 - the browser fixtures

from trainyard import Queue, Task
from trainyard.controller.hpo import DiscreteParameterRange, HyperParameterOptimizer, UniformParameterRange

TRIAL = textwrap.dedent(
    """
    from trainyard import current_task
    task = current_task()
    x, width = task.get_parameter("Args/x"), task.get_parameter("Args/width")
    for s in range(6):
        task.log_metric("loss", "val", (x - 0.3) ** 2 + 1.0 / (s + 1) + width / 1000, step=s)
        task.log_metric("accuracy", "val", 1 - x / 2, step=s)
    task.set_output("final", round((x - 0.3) ** 2, 4))
    """
)


def _study(conn) -> HyperParameterOptimizer:
    Queue.create("trials")
    base = Task.create(
        "web-trial", "hpo", command=[sys.executable, "-c", TRIAL], parameters={"Args/x": 0.5, "Args/width": 64}
    )
    opt = HyperParameterOptimizer(
        base.id,
        [UniformParameterRange("Args/x", 0.0, 1.0), DiscreteParameterRange("Args/width", [32, 64, 128])],
        "loss",
        "val",
        "min",
        optimizer_class="RandomSearch",
        execution_queue="trials",
        max_number_of_concurrent_tasks=2,
        total_max_jobs=6,
        optuna_sampler_kwargs={"seed": 4},
        name="web study",
    )
    opt.start_locally(run_trials_locally=True)
    assert opt.wait() and opt.study.status == "completed"
    return opt


def test_study_page_shows_trials_best_first_charts_and_parallel_coordinates(page, stack, conn):  # noqa: F811
    opt = _study(conn)
    login(page, stack, conn)
    page.click("#nav a[data-nav=studies]")
    page.click(f"#studies-table tr[data-study='{opt.id}'] a")
    page.wait_for_url(f"**#/studies/{opt.id}")
    page.wait_for_selector("#trials-table tbody tr")
    values = [float(v) for v in page.locator("#trials-table td.objective").all_inner_texts()]
    assert len(values) == 6 and values == sorted(values)  # best (lowest loss) first
    best = min(opt._entries(), key=lambda e: e.value)
    assert page.locator("#trials-table tbody tr").first.get_attribute("data-trial") == str(best.number)
    page.wait_for_selector("#objective-over-trials canvas")
    page.wait_for_selector("#curves canvas")
    assert page.locator("#parallel-svg polyline").count() == 6  # one line per completed trial
    axes = page.locator("#parallel-svg text.axis-name").all_text_contents()
    assert axes == ["Args/x", "Args/width", "objective"]
    assert page.locator("dl.facts").inner_text().count("6 completed") == 1
    shot(page, stack, "study", full=True)

    page.click("button[data-action=compare-top]")  # the five best, side by side
    page.wait_for_url("**#/compare?ids=*")
    page.wait_for_selector("#compare-params tbody tr")
    assert page.locator("#compare-params thead th").count() == 1 + 5


def test_compare_selected_tasks_highlights_differences_and_overlays_scalars(page, stack, conn):  # noqa: F811
    opt = _study(conn)
    top = [t.id for t in opt.get_top_experiments(2)]
    login(page, stack, conn)
    page.goto(stack.url + "/#/tasks?tag=optimization")
    for task_id in top:
        page.check(f"#tasks-table tr[data-task='{task_id}'] input.pick")
    page.click("#compare-selected")
    page.wait_for_url("**#/compare?ids=*")
    page.wait_for_selector("#compare-params tbody tr")
    rows = page.locator("#compare-params tbody tr")
    keys = [rows.nth(i).get_attribute("data-key") for i in range(rows.count())]
    assert keys == ["Args/width", "Args/x"]
    x_row = page.locator("#compare-params tr[data-key='Args/x']")
    assert "differs" in (x_row.get_attribute("class") or "")  # two trials never share a float x
    records = [Task.get(t) for t in top]
    same_width = records[0].get_parameter("Args/width") == records[1].get_parameter("Args/width")
    width_class = page.locator("#compare-params tr[data-key='Args/width']").get_attribute("class") or ""
    assert ("differs" in width_class) is (not same_width)
    page.wait_for_selector("#compare-charts .chart[data-title='loss'] canvas")
    page.wait_for_selector("#compare-charts .chart[data-title='accuracy'] canvas")
    assert page.locator("#compare-outputs tr[data-key='final'] td").count() == 3
    page.check("#only-differences")
    if same_width:
        assert not page.locator("#compare-params tr[data-key='Args/width']").is_visible()
    shot(page, stack, "compare", full=True)


def test_study_and_compare_api_answers_and_refusals(redis_server, conn):
    """The JSON API behind the pages: a study with its trials best first, curves, and compare's
    refusals (no ids, too many, an unknown task) as one-line JSON errors."""
    from fastapi.testclient import TestClient

    from trainyard.web import auth, create_app

    opt = _study(conn)
    headers = {"Authorization": f"Bearer {auth.create_token(conn, 'alice', 'read')[0]}"}
    with TestClient(create_app(redis_server.url)) as client:
        listed = client.get("/api/studies", headers=headers).json()
        assert [s["id"] for s in listed["items"]] == [opt.id] and listed["total"] == 1
        study = client.get(f"/api/studies/{opt.id}", headers=headers).json()
        values = [t["value"] for t in study["trials"]]
        assert values == sorted(values) and study["controller_status"] == "completed"
        curves = client.get(f"/api/studies/{opt.id}/curves?trials=2", headers=headers).json()["curves"]
        assert len(curves) == 2 and all(len(c["steps"]) == 6 for c in curves.values())
        assert client.post(f"/api/studies/{opt.id}/stop", headers=headers).status_code == 403  # read role
        ids = [t["task"] for t in study["trials"]]
        both = client.get("/api/compare", params={"ids": ",".join(ids[:2])}, headers=headers).json()
        assert [t["id"] for t in both["tasks"]] == ids[:2] and set(both["charts"]) == {"loss", "accuracy"}
        for query, status, text in [
            ({"ids": ""}, 422, "ids: give at least one task id"),
            ({"ids": ",".join(f"t{i}" for i in range(21))}, 422, "at most 20 tasks"),
            ({"ids": f"{ids[0]},nope"}, 404, "nope"),
        ]:
            answer = client.get("/api/compare", params=query, headers=headers)
            assert answer.status_code == status and text in answer.json()["error"]["message"], answer.text
        assert client.get("/api/studies/nope", headers=headers).status_code == 404
