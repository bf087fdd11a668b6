"""The whole benchmark suite in one command: every benchmark, then every target met or missed.

Run from the repository root::

    python -m benchmarks [--quick] [--only enqueue,dispatch] [--out benchmarks/results] [--strict]

Each benchmark runs as its own process (its own throwaway redis-server, its peers on that same
Redis: raw RQ and Celery), prints its tables and writes ``<out>/<name>.json``. Then one table
lists every target of every benchmark with its value, its threshold and met / missed, and
``<out>/suite.json`` gathers them with the machine facts (``<out>/summary.md``: the headline
figures as the README's Markdown table). ``--quick`` runs tiny sizes (a smoke
run: about a minute; its figures mean nothing). Exit status: 0 when every benchmark ran (1 when
one failed; with ``--strict`` also 1 when a target was missed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, when run as python -m benchmarks

from common import console, machine_facts, print_table, write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"

# name -> (script, full-size arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "enqueue": (
        "bench_enqueue.py",
        [],
        ["--tasks", "200", "--repeat", "1"],
    ),
    "dispatch": (
        "bench_dispatch.py",
        [],
        ["--samples", "3", "--warmup", "1", "--tasks", "10", "--workers", "1", "--no-burst"],
    ),
    "envs": (
        "bench_envs.py",
        [],
        ["--cold", "1", "--cached", "2", "--samples", "2", "--warmup", "0", "--installers", "uv", "--no-docker"],
    ),
    "pipeline": (
        "bench_pipeline.py",
        [],
        ["--steps", "3", "--runs", "1", "--warmup", "0", "--no-local", "--no-trace"],
    ),
    "hpo": (
        "bench_hpo.py",
        [],
        ["--trials", "8", "--concurrency", "1", "--steps", "8", "--sampler", "RandomSampler"],
    ),
    "scale": (
        "bench_scale.py",
        [],
        ["--tasks", "2000", "--batch", "500", "--repeat", "2", "--cli-repeat", "1", "--slow-repeat", "1"],
    ),
    "services": (
        "bench_services.py",
        [],
        ["--alerts", "5", "--burst", "50", "--scaleups", "2", "--window", "1"],
    ),
}


def run_one(name: str, quick: bool, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run one benchmark script (its output goes straight to this console); its JSON, read back."""
    script, full, small = BENCHMARKS[name]
    json_out = out / f"{name}.json"
    json_out.unlink(missing_ok=True)
    argv = [sys.executable, str(HERE / script), *(small if quick else full), *extra, "--json-out", str(json_out)]
    console.rule(f"[bold]{name}[/]: {' '.join(argv[1:])}")
    started = time.perf_counter()
    code = subprocess.call(argv, cwd=HERE.parent)
    wall = time.perf_counter() - started
    entry: dict[str, Any] = {"name": name, "argv": argv[1:], "exit_code": code, "wall_seconds": round(wall, 1)}
    if code == 0 and json_out.exists():
        data = json.loads(json_out.read_text())
        entry["json"] = str(json_out)
        entry["targets"] = [normalize(name, t) for t in data["results"].get("targets") or []]
    else:
        entry["targets"] = []
        entry["error"] = f"{script} exited {code}" + ("" if json_out.exists() else " without writing its JSON")
    return entry


def normalize(benchmark: str, target: dict[str, Any]) -> dict[str, Any]:
    """One shape for every benchmark's targets."""
    return {
        "benchmark": benchmark,
        "target": target["target"],
        "value": target.get("value"),
        "threshold": target.get("threshold"),
        "unit": target.get("unit", ""),
        "met": bool(target["met"]),
        "headline": target.get("headline", True),  # False: an extra row, not one of the targets
    }


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.2f} {unit}".strip()


def summary(entries: list[dict[str, Any]]) -> None:
    rows = []
    for entry in entries:
        if entry.get("error"):
            rows.append([f"{entry['name']}: {entry['error']}", "-", "-", "[red]not run[/]"])
        for t in entry["targets"]:
            status = "[green]met[/]" if t["met"] else "[red]missed[/]"
            label = f"{entry['name']}: {t['target']}" + ("" if t["headline"] else " (extra)")
            rows.append([label, show(t["value"], t["unit"]), show(t["threshold"], t["unit"]), status])
    print_table(
        "Every target, each against its peer measured in the same run",
        ["benchmark: target", "value", "threshold", "status"],
        rows,
        caption="(extra): a row the benchmark reports beyond the issue's targets",
    )
    print_table(
        "Benchmarks",
        ["benchmark", "exit", "wall s", "targets met"],
        [
            [
                e["name"],
                str(e["exit_code"]),
                f"{e['wall_seconds']:.0f}",
                f"{sum(t['met'] for t in e['targets'])}/{len(e['targets'])}",
            ]
            for e in entries
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the suite runs, figures mean nothing")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON folder (default: %(default)s)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--pass", dest="passthrough", action="append", default=[], metavar="NAME:ARGS",
        help="more arguments for one benchmark, e.g. --pass 'envs:--no-docker' (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)} (one of: {', '.join(BENCHMARKS)})")
    extra: dict[str, list[str]] = {}
    for item in args.passthrough:
        name, sep, rest = item.partition(":")
        if not sep or name not in BENCHMARKS:
            parser.error(f"--pass {item!r}: expected NAME:ARGS with NAME one of {', '.join(BENCHMARKS)}")
        extra.setdefault(name, []).extend(rest.split())

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    entries = [run_one(name, args.quick, args.out, extra.get(name, [])) for name in names]
    wall = time.perf_counter() - started
    console.rule("[bold]suite[/]")
    summary(entries)
    targets = [t for e in entries for t in e["targets"]]
    headline = [t for t in targets if t["headline"]]
    failed = [e["name"] for e in entries if e.get("error")]
    result = {
        "quick": args.quick,
        "benchmarks": entries,
        "targets": targets,
        "all_targets_met": all(t["met"] for t in headline) and not failed,
        "missed": [f"{t['benchmark']}: {t['target']}" for t in headline if not t["met"]],
        "failed_benchmarks": failed,
        "wall_seconds": round(wall, 1),
    }
    from report_md import markdown

    summary_md = args.out / "summary.md"
    summary_md.write_text(markdown(args.out))
    result["summary_md"] = str(summary_md)
    path = write_json(args.out / "suite.json", "suite", result, machine_facts())
    verdict = "every target met" if result["all_targets_met"] else f"missed: {len(result['missed'])}, failed: {failed}"
    console.print(f"suite ran in {wall / 60:.1f} min; {verdict}; results in {path}")
    if failed:
        return 1
    return 1 if args.strict and not result["all_targets_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
