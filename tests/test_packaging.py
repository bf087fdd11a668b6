"""A normal (non-editable) install carries every package: build the wheel and look inside."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO

MAPPED = {
    "trainyard": "trainyard",
    "queues": "trainyard.queues",
    "worker": "trainyard.worker",
    "controller": "trainyard.controller",
}


def _source_packages() -> set[str]:
    found = set()
    for folder, package in MAPPED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]))
    return found


def test_the_wheel_holds_every_package(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("trainyard-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {n[: -len("/__init__.py")].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert _source_packages() <= in_wheel, sorted(_source_packages() - in_wheel)
    assert "trainyard/runtime/task_api.py" in names and "trainyard/cli/__init__.py" in names
    # the web app's files: it must work with no internet, so its JavaScript libraries ship inside
    static = REPO / "trainyard" / "web" / "static"
    shipped = {f"trainyard/web/static/{p.relative_to(static).as_posix()}" for p in static.rglob("*") if p.is_file()}
    assert "trainyard/web/static/vendor/cytoscape.min.js" in shipped
    assert shipped <= set(names), sorted(shipped - set(names))
