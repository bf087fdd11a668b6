"""Pipeline runs as text: the DAG by levels, and a table of steps."""

from __future__ import annotations

import time

from .dag import all_parents
from .model import PipelineRun

MARK = {
    "pending": "·",
    "queued": "…",
    "running": "▶",
    "completed": "✓",
    "cached": "≡",
    "failed": "✗",
    "aborted": "■",
    "skipped": "-",
}


def levels(run: PipelineRun) -> list[list[str]]:
    """Steps grouped by depth: a step sits one level below its deepest parent."""
    depth: dict[str, int] = {}

    def level(name: str, seen: tuple = ()) -> int:
        if name in depth:
            return depth[name]
        parents = [p for p in all_parents(run.steps[name]) if p in run.steps and p not in seen]
        depth[name] = 1 + max((level(p, (*seen, name)) for p in parents), default=-1)
        return depth[name]

    for name in run.steps:
        level(name)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name in run.steps:
        out[depth[name]].append(name)
    return out


def dag_text(run: PipelineRun) -> str:
    """One line per level: ``[✓ prep] ──▶ [▶ train ← prep]``-style, with each step's parents."""
    lines = []
    for i, names in enumerate(levels(run)):
        cells = []
        for name in names:
            state = run.state.get(name)
            status = state.status if state else "pending"
            parents = sorted(all_parents(run.steps[name]))
            arrow = f" ← {', '.join(parents)}" if parents else ""
            cells.append(f"[{MARK.get(status, '?')} {name} {status}{arrow}]")
        lines.append(("  " * i) + ("└─▶ " if i else "") + "   ".join(cells))
    return "\n".join(lines)


def duration(start: float | None, end: float | None) -> str:
    if not start:
        return ""
    seconds = (end or time.time()) - start
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def summary(run: PipelineRun) -> str:
    head = f"pipeline {run.name} v{run.version} (run {run.id}): {run.status}"
    if run.started:
        head += f" in {duration(run.started, run.ended)}"
    if run.message:
        head += f" — {run.message}"
    return head + "\n" + dag_text(run)
