"""The session-end leftover check (tests/leftovers.py) finds what a test leaves behind."""

from __future__ import annotations

import subprocess
import sys

import leftovers
import psutil
import pytest


def test_the_check_reports_and_ends_a_leftover_process_and_a_write_under_the_home(monkeypatch, tmp_path):
    home = tmp_path / "real-home" / ".trainyard"
    home.mkdir(parents=True)
    (home / "kept").write_text("there before")
    monkeypatch.setattr(leftovers, "real_trainyard_home", lambda: home)
    monkeypatch.setattr(leftovers, "WAIT_S", 0.5)
    monkeypatch.setenv(leftovers.TOKEN_ENV, "restored-after-the-test")
    check = leftovers.LeftoverCheck()
    check.begin()  # a fresh token in os.environ: the child below carries it
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (home / "actions").mkdir()
    problems = check.finish()
    assert problems[0] == f"process {child.pid} still running: {sys.executable} -c import time; time.sleep(600)"
    assert problems[1] == f"written under the real {home}: actions"
    assert len(problems) == 2
    assert child.wait(timeout=30) < 0  # ended by the check
    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
    assert leftovers.LeftoverCheck(token="other").processes() == []  # another run's check sees none of it


def test_the_check_reports_and_removes_a_left_network(monkeypatch, tmp_path):
    """A multi-host test's network (tests/netns.py) that outlives its test: its namespaces and
    veths carry the run's token in their names; the check names them and removes them."""
    import netns

    why_not = netns.unavailable()
    if why_not:
        pytest.skip(why_not)
    monkeypatch.setattr(leftovers, "real_trainyard_home", lambda: tmp_path / "real-home" / ".trainyard")
    monkeypatch.setenv(leftovers.TOKEN_ENV, "restored-after-the-test")
    check = leftovers.LeftoverCheck()
    check.begin()
    network = netns.Network(["left"]).open()
    host = network.hosts["left"]
    try:
        assert leftovers.LeftoverCheck(token="other").networks() == []  # another run's check sees none of it
        assert check.finish() == [f"network namespace {host.netns} left behind", f"veth {host.cable} left behind"]
        assert network.leftovers() == []
    finally:
        network.close()
