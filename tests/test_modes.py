"""Execution modes as plugins (worker/modes/): the registry covers the records' vocabulary."""

from __future__ import annotations

import pytest

from trainyard.queues.record import ExecutionMode
from trainyard.worker import modes
from trainyard.worker.launch import PrepareError


def test_every_execution_mode_has_its_module():
    assert modes.names() == tuple(m.value for m in ExecutionMode)
    for name in modes.names():
        mode = modes.get(name)
        assert mode.name == name and callable(mode.prepare) and callable(mode.launch)


def test_an_unknown_mode_is_refused_with_the_known_ones():
    with pytest.raises(PrepareError, match=r"unknown execution mode 'slurm' \(one of local, venv, conda, docker\)"):
        modes.get("slurm")
