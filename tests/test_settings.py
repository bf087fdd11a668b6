"""One settings object: every TRAINYARD_* variable is read in trainyard/settings.py and listed once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

from trainyard.queues import config
from trainyard.queues.config import VARIABLES, Settings
from trainyard.settings import from_env

# Modules that may read TRAINYARD_* from the environment: the reader, and the in-task runtime
# (standard library only, it runs without trainyard).
READERS = {"trainyard/settings.py"}
RUNTIME = "trainyard/runtime/"
LEFT: set[str] = set()


def _reads_trainyard_variable(tree: ast.AST) -> list[int]:
    """Lines where a ``TRAINYARD_*`` string is looked up in ``os.environ`` / ``os.getenv``."""
    lines = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = ast.unparse(node.func.value)
            if (node.func.attr in ("get", "pop") and owner.endswith("environ")) or ast.unparse(
                node.func
            ) == "os.getenv":
                target = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("environ"):
            target = node.slice
        if isinstance(target, ast.Constant) and str(target.value).startswith("TRAINYARD_"):
            lines.append(node.lineno)
    return lines


def test_no_module_but_the_settings_reads_trainyard_variables():
    found = {}
    for folder in ("trainyard", "queues", "worker", "controller"):
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            if rel in READERS | LEFT or rel.startswith(RUNTIME):
                continue
            lines = _reads_trainyard_variable(ast.parse(path.read_text()))
            if lines:
                found[rel] = lines
    assert found == {}


def test_the_table_the_settings_and_the_docs_agree(tmp_path):
    fields = set(Settings.__dataclass_fields__)
    assert {v.field for v in VARIABLES} <= fields
    documented = re.findall(r"^\| `(TRAINYARD_[A-Z_<>]+)` \|", (REPO / "docs" / "design.md").read_text(), re.M)
    assert documented == [v.name for v in VARIABLES]
    env = {"TRAINYARD_HOME": str(tmp_path), "TRAINYARD_HEARTBEAT_S": "0.5", "TRAINYARD_SECRET_HF": "tok", "HOME": "/x"}
    read = from_env(env)
    assert read.home == tmp_path and read.heartbeat_s == 0.5 and read.secrets == {"TRAINYARD_SECRET_HF": "tok"}
    assert read.artifacts_url == str(tmp_path / "artifacts") and read.actions_cache == tmp_path / "actions"


def test_the_layers_see_a_changed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINYARD_HOME", str(tmp_path / "a"))
    assert config.current().home == tmp_path / "a"
    monkeypatch.setenv("TRAINYARD_HOME", str(tmp_path / "b"))
    assert config.current().home == tmp_path / "b"


def test_settings_module_is_the_one_reader_of_the_table():
    text = Path(REPO / "trainyard" / "settings.py").read_text()
    for variable in VARIABLES:
        if "<" not in variable.name:
            assert f'"{variable.name}"' in text, variable.name
