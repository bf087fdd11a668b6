"""Test results per step: JUnit XML reports (written by a real pytest run inside the job) stored,
counted per step and per run, failing the step when asked, served by the web API."""

from __future__ import annotations

import sys
import textwrap

import pytest
from fastapi.testclient import TestClient

from trainyard.controller.files import load_text, run_here
from trainyard.controller.files.errors import PipelineFileError
from trainyard.queues import logs
from trainyard.queues.store import TaskStore
from trainyard.web import auth, create_app

TESTS = textwrap.dedent(
    """
    import pytest

    def test_add():
        assert 1 + 1 == 2

    def test_div():
        assert 1 / 0

    @pytest.mark.skip(reason="not today")
    def test_later():
        pass
    """
)


def pipeline(fail: bool) -> str:
    return f"""
name: junit
variables:
  PY: {sys.executable}
jobs:
  unit:
    steps:
      - name: write tests
        run: |
          cat > test_unit.py <<'EOF'
{textwrap.indent(TESTS, " " * 10)}
          EOF
      - name: run tests
        run: '"$PY" -m pytest -q -p no:cacheprovider test_unit.py --junitxml=reports/unit.xml || true'
        tests:
          junit: reports/*.xml
          fail_on_failure: {str(fail).lower()}
      - name: after
        run: echo after the tests
"""


def test_reports_are_counted_and_fail_the_step_when_asked(conn, redis_server):
    run = run_here(load_text(pipeline(fail=True), "junit.yaml"), conn=conn)
    assert run.status == "failed"
    record = TaskStore(conn).get(run.state["unit"].task_id)
    assert record.runtime.error == "✗ run tests: 1 test(s) failed: test_div"
    report = record.artifacts["tests-2"]
    junit = report.metadata["junit"]
    assert {k: junit[k] for k in ("tests", "passed", "failed", "errors", "skipped")} == {
        "tests": 3,
        "passed": 1,
        "failed": 1,
        "errors": 0,
        "skipped": 1,
    }
    assert junit["step"] == "run tests" and junit["files"] == ["reports/unit.xml"]
    [failure] = junit["failures"]
    assert failure["name"] == "test_div" and "ZeroDivisionError" in failure["message"]
    assert report.uri and report.size  # the combined XML is stored with the task
    log = [line.text for line in logs.read(conn, record.id)]
    assert "tests: 1 passed, 1 failed, 0 errors, 1 skipped (reports/unit.xml)" in log
    assert "after the tests" not in log

    token = auth.create_token(conn, "reader", "read")[0]
    with TestClient(create_app(redis_server.url)) as client:
        shown = client.get(f"/api/runs/{run.id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert shown["tests"] == {"tests": 3, "passed": 1, "failed": 1, "errors": 0, "skipped": 1}
    [node] = shown["nodes"]
    assert node["tests"][0]["failures"][0]["name"] == "test_div" and node["tests"][0]["artifact"] == "tests-2"


def test_failing_tests_only_fail_the_step_when_asked(conn):
    run = run_here(load_text(pipeline(fail=False), "junit.yaml"), conn=conn)
    assert run.status == "completed"
    record = TaskStore(conn).get(run.state["unit"].task_id)
    assert record.artifacts["tests-2"].metadata["junit"]["failed"] == 1
    assert "after the tests" in [line.text for line in logs.read(conn, record.id)]


def test_missing_or_bad_reports(conn, tmp_path):
    text = """
name: missing
jobs:
  a:
    steps:
      - run: echo '<html>not junit</html>' > bad.xml
        tests: {junit: [nothing/*.xml, bad.xml], fail_on_failure: true}
"""
    run = run_here(load_text(text, "missing.yaml"), conn=conn)
    record = TaskStore(conn).get(run.state["a"].task_id)
    assert run.status == "failed"
    assert record.runtime.error.endswith("test reports: nothing/*.xml: no report file matched")
    problems = record.artifacts["tests-1"].metadata["junit"]["problems"]
    assert problems[1] == "bad.xml: not JUnit XML (root element <html>)"
    with pytest.raises(PipelineFileError, match="tests.junit"):
        load_text("name: x\njobs:\n  a:\n    steps: [{run: 'true', tests: {junit: []}}]\n")


def test_the_web_app_passes_on_only_the_expected_shape_of_a_report():
    """Artifact metadata is written by the task: a hostile or broken one cannot break the run page."""
    from types import SimpleNamespace

    from trainyard.web import views

    hostile = {"failed": "9", "passed": -1, "skipped": True, "failures": [{"name": ["x"]}, "nope"], "problems": "x"}
    record = SimpleNamespace(artifacts={"tests-1": SimpleNamespace(name="tests-1", metadata={"junit": hostile})})
    [report] = views.test_reports(record)
    assert report == {
        "tests": 0,
        "passed": 0,
        "failed": 0,
        "errors": 0,
        "skipped": 0,
        "index": 0,
        "step": "tests-1",
        "artifact": "tests-1",
        "failures": [{"name": "['x']", "classname": "", "kind": "", "message": ""}],
        "problems": [],
    }
    assert views.test_totals([{"tests": [report]}, {"tests": []}])["failed"] == 0
