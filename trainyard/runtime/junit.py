"""JUnit XML test reports of a pipeline-file step: found, counted and combined (standard library only).

A step declares its reports (``tests: {junit: reports/*.xml}``); after the step the job runner
reads every matching file inside the job's folder, counts passed, failed, errored and skipped test
cases, keeps the first failures' names and messages, and stores one combined report as the
step's artifact ``tests-<n>`` with the counts in its metadata (what the web app shows).
Work is bounded: at most ``MAX_FILES`` files of ``MAX_BYTES`` each, ``MAX_LISTED`` failures listed.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

MAX_FILES = 200
MAX_BYTES = 32 << 20
MAX_LISTED = 100
MAX_MESSAGE = 1000


def find(workspace: Path, patterns: list[str]) -> tuple[list[Path], list[str]]:
    """The report files matching ``patterns`` (globs relative to ``workspace``), and problems."""
    root = workspace.resolve()
    found: list[Path] = []
    problems: list[str] = []
    for pattern in patterns:
        if Path(pattern).is_absolute():
            problems.append(f"{pattern}: report paths are relative to the job's folder")
            continue
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            problems.append(f"{pattern}: no report file matched")
        for path in matches:
            resolved = path.resolve()
            if root not in resolved.parents:
                problems.append(f"{pattern}: {path.name} lies outside the job's folder")
            elif resolved not in found:
                found.append(resolved)
    if len(found) > MAX_FILES:
        problems.append(f"{len(found)} report files: only the first {MAX_FILES} are read")
        found = found[:MAX_FILES]
    return found, problems


def read(files: list[Path], workspace: Path) -> tuple[dict[str, Any], ET.Element]:
    """(summary, combined ``<testsuites>``) of the report files."""
    summary: dict[str, Any] = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "time": 0.0}
    summary.update(files=[], failures=[], problems=[])
    combined = ET.Element("testsuites")
    for path in files:
        name = str(path.relative_to(workspace.resolve()))
        if path.stat().st_size > MAX_BYTES:
            summary["problems"].append(f"{name}: over {MAX_BYTES >> 20} MiB, not read")
            continue
        try:
            root = ET.parse(str(path)).getroot()
        except (ET.ParseError, OSError) as exc:
            summary["problems"].append(f"{name}: not JUnit XML ({exc})")
            continue
        if root.tag not in ("testsuite", "testsuites"):
            summary["problems"].append(f"{name}: not JUnit XML (root element <{root.tag}>)")
            continue
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        summary["files"].append(name)
        for suite in suites:
            combined.append(suite)
        for case in root.iter("testcase"):
            _count(case, summary)
    summary["time"] = round(summary["time"], 3)
    return summary, combined


def _count(case: ET.Element, summary: dict[str, Any]) -> None:
    summary["tests"] += 1
    with contextlib.suppress(ValueError):
        summary["time"] += float(case.get("time") or 0)
    outcome = "passed"
    detail = None
    for child in case:
        if child.tag in ("failure", "error"):
            outcome, detail = ("failed" if child.tag == "failure" else "errors"), child
            break
        if child.tag == "skipped":
            outcome = "skipped"
    summary[outcome] += 1
    if detail is not None and len(summary["failures"]) < MAX_LISTED:
        message = detail.get("message")
        if not message:
            text = (detail.text or "").strip()
            message = text.splitlines()[0] if text else ""
        summary["failures"].append(
            {
                "name": case.get("name") or "?",
                "classname": case.get("classname") or "",
                "kind": detail.tag,
                "message": str(message)[:MAX_MESSAGE],
            }
        )


def line(summary: dict[str, Any]) -> str:
    """``tests: 3 passed, 1 failed, 0 errors, 2 skipped``."""
    counts = ", ".join(f"{summary[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
    return f"tests: {counts}"


def failure_text(summary: dict[str, Any]) -> str | None:
    """Why the step fails when asked to fail on tests (None: every test passed)."""
    bad = summary["failed"] + summary["errors"]
    if bad:
        names = ", ".join(f["name"] for f in summary["failures"][:3])
        more = f" and {bad - 3} more" if bad > 3 else ""
        return f"{bad} test(s) failed: {names}{more}"
    if summary["problems"]:
        return f"test reports: {summary['problems'][0]}"
    if not summary["tests"]:
        return "test reports hold no test cases"
    return None


def write(combined: ET.Element, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(combined).write(str(path), encoding="utf-8", xml_declaration=True)
    return path
