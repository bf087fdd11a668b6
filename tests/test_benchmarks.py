"""Smoke test of the benchmark suite: ``python -m benchmarks --quick`` runs every benchmark end to
end (its own redis-server, real RQ, Celery and trainyard workers, a real venv built with uv) and
writes its JSON with a met / missed verdict for every target. No timing is asserted: the figures
of a quick run mean nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_quick_suite_runs_end_to_end_and_reports_every_target(tmp_path):
    pytest.importorskip("celery", reason="the Celery peer needs the bench extra: pip install -e '.[bench]'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}  # the suite starts its own Redis
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=285,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    suite = json.loads((tmp_path / "suite.json").read_text())
    results = suite["results"]
    assert [b["name"] for b in results["benchmarks"]] == [
        "enqueue",
        "dispatch",
        "envs",
        "pipeline",
        "hpo",
        "scale",
        "services",
    ]
    for bench in results["benchmarks"]:
        assert bench["exit_code"] == 0
        assert bench["targets"], bench["name"]
        assert json.loads(Path(bench["json"]).read_text())["results"]["targets"]
    for target in results["targets"]:
        assert isinstance(target["met"], bool) and target["value"] is not None, target
    assert isinstance(results["all_targets_met"], bool)
    assert suite["machine"]["cpu_count"] and suite["machine"]["date"]
    dispatch = json.loads((tmp_path / "dispatch.json").read_text())["results"]
    assert {"rq_worker", "celery", "trainyard"} <= set(dispatch["latency"])  # the peers ran in the same run
    assert "met" in proc.stdout and "Every target" in proc.stdout
    assert "| measurement | trainyard | raw RQ | Celery |" in (tmp_path / "summary.md").read_text()
