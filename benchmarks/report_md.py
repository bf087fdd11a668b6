"""The suite's headline figures as one Markdown table (for the README), read from its JSON files.

``python benchmarks/report_md.py [benchmarks/results]`` prints it; ``python -m benchmarks`` writes it
to ``<out>/summary.md`` after a run. Rows whose benchmark did not run are left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text())["results"] if path.exists() else None


def _status(met: bool) -> str:
    return "met" if met else "**missed**"


def _target(targets: list[dict[str, Any]], text: str) -> dict[str, Any] | None:
    return next((t for t in targets if text in t["target"]), None)


def rows(out: Path) -> list[list[str]]:
    table: list[list[str]] = []
    enq = _load(out, "enqueue")
    if enq:
        m = enq["measurements"]
        for key, what in (("trainyard_clone_many", "clone_many"), ("trainyard_create_many", "create_many")):
            t = _target(enq["targets"], f"{what} >= ")
            table.append(
                [
                    f"bulk enqueue, {m[key]['count']:,} tasks (`{what}` / `enqueue_many` / Celery `send_task` x n)",
                    f"{m[key]['per_second']:,.0f} /s",
                    f"{m['rq_enqueue_many']['per_second']:,.0f} /s",
                    f"{m['celery_send_many']['per_second']:,.0f} /s" if "celery_send_many" in m else "",
                    f"{m[key]['vs_rq_enqueue_many']:.2f}x; target >= 0.7x: {_status(t['met'])}" if t else "",
                ]
            )
        one = m["trainyard_enqueue"]
        table.append(
            [
                "one by one: create + enqueue / `enqueue` / `send_task`",
                f"{one['per_second']:,.0f} /s",
                f"{m['rq_enqueue']['per_second']:,.0f} /s",
                f"{m['celery_send']['per_second']:,.0f} /s" if "celery_send" in m else "",
                f"{one.get('vs_rq_enqueue', 0):.2f}x",
            ]
        )
        mem = enq["memory"]
        t = _target(enq["targets"], "clone_many < 2 KB")
        table.append(
            [
                "Redis memory per queued task (record, RQ job, indexes, event / RQ job / Celery message)",
                f"{mem['trainyard_clone_many']['bytes_per_task']:,.0f} B",
                f"{mem['rq_enqueue_many']['bytes_per_task']:,.0f} B",
                f"{mem['celery_send_many']['bytes_per_task']:,.0f} B" if "celery_send_many" in mem else "",
                f"target < 2 KB: {_status(t['met'])}" if t else "",
            ]
        )
    dis = _load(out, "dispatch")
    if dis:
        lat = dis["latency"]

        def ms(kind: str) -> str:
            if kind not in lat:
                return ""
            x = lat[kind]["latency_ms"]
            return f"{x['median']:.1f} / {x['p99']:.1f} ms"

        t = _target(dis["targets"], "enqueue-to-start")
        table.append(
            [
                "enqueue -> task process started, idle worker (median / p99)",
                ms("trainyard"),
                ms("rq_worker") + " (`Worker`)",
                ms("celery"),
                f"{lat['trainyard']['vs_rq_worker']:.2f}x; target <= 1.2x: {_status(t['met'])}" if t else "",
            ]
        )
        t = _target(dis["targets"], "overhead above")
        table.append(
            [
                "overhead above starting the same process by hand (median)",
                f"{lat['trainyard']['overhead_vs_popen_ms']:.1f} ms",
                f"{lat['rq_worker']['overhead_vs_popen_ms']:.1f} ms",
                f"{lat['celery']['overhead_vs_popen_ms']:.1f} ms" if "celery" in lat else "",
                f"target < 10 ms: {_status(t['met'])}" if t else "",
            ]
        )
        warm = dis["throughput"]["warm"]
        for count in dis["worker_counts"]:
            by = {e["kind"]: e for e in warm if e["workers"] == count}
            if "trainyard" not in by:
                continue
            t = _target(dis["targets"], f"{count} worker(s)")
            table.append(
                [
                    f"throughput, `/bin/true` tasks, {count} worker{'s' if count > 1 else ''}",
                    f"{by['trainyard']['per_second']:.0f} /s",
                    f"{by['rq_worker']['per_second']:.0f} /s" if "rq_worker" in by else "",
                    f"{by['celery']['per_second']:.0f} /s" if "celery" in by else "",
                    f"{by['trainyard']['vs_rq_worker']:.2f}x; target >= 0.8x: {_status(t['met'])}" if t else "",
                ]
            )
        mem = dis["memory"]
        table.append(
            [
                "idle worker memory, RSS (with its own child processes)",
                f"{mem['trainyard']['tree_rss_mib']:.0f} MiB",
                f"{mem['rq_worker']['tree_rss_mib']:.0f} MiB",
                f"{mem['celery']['tree_rss_mib']:.0f} MiB" if "celery" in mem else "",
                "",
            ]
        )
    pipe = _load(out, "pipeline")
    if pipe:
        svc = pipe["series"]["services"]
        peers = pipe.get("peers") or {}
        t = pipe["targets"][0]
        table.append(
            [
                f"pipeline hop, parent done -> child running ({pipe['steps']}-step chain; median / p99)",
                f"{svc['hop_ms']['median']:.1f} / {svc['hop_ms']['p99']:.1f} ms",
                f"{peers['rq']['hop_ms']['median']:.1f} / {peers['rq']['hop_ms']['p99']:.1f} ms (`depends_on`)"
                if "rq" in peers
                else "",
                f"{peers['celery']['hop_ms']['median']:.1f} / {peers['celery']['hop_ms']['p99']:.1f} ms (`chain`)"
                if "celery" in peers
                else "",
                f"target < 50 ms: {_status(t['met'])}",
            ]
        )
        table.append(
            [
                f"whole {pipe['steps']}-step linear pipeline (controller on a services worker)",
                f"{svc['wall_s']['median']:.2f} s",
                f"{peers['rq']['pipeline_s']:.2f} s" if "rq" in peers else "",
                f"{peers['celery']['pipeline_s']:.2f} s" if "celery" in peers else "",
                "ClearML: >= 12 s of polling per edge",
            ]
        )
    envs = _load(out, "envs")
    if envs:
        venv = envs["venv"]
        cached = ", ".join(f"{v['cached']['to_running_s']['median'] * 1000:.0f} ms ({k})" for k, v in venv.items())
        met = all(t["met"] for t in envs["targets"])
        label = "venv mode, cached environment: pickup -> task running (median)"
        table.append([label, cached, "", "", f"target < 0.5 s: {_status(met)}"])
        cold = ", ".join(f"{v['cold']['to_running_s']['median']:.2f} s ({k})" for k, v in venv.items())
        table.append(["venv mode, cold environment, 2 requirements (download caches warm)", cold, "", "", ""])
        ld = envs.get("local_docker") or {}
        if "docker_stamp" in ld:
            d = ld["docker_stamp"]
            table.append(
                [
                    "docker mode (busybox): pickup -> task running / the SDK's `containers.run` by hand",
                    f"{d['to_running_s']['median']:.2f} s",
                    "",
                    "",
                    f"by hand: {d['by_hand_s']['median']:.2f} s",
                ]
            )
    scale = _load(out, "scale")
    if scale:
        api = scale["api"]
        n = scale["data_set"]["tasks"]
        heads = [k for k in ("list_all", "list_project", "list_status", "list_tag", "list_project_status") if k in api]
        worst = max(api[k]["median_ms"] for k in heads)
        headline = [t for t in scale["targets"] if t.get("headline")]
        table.append(
            [
                f"{n:,} tasks stored: first page of `Task.list` (slowest single filter) / `queue show`",
                f"{worst:.1f} ms / {api['queue_tasks']['median_ms']:.1f} ms",
                "",
                "",
                f"target < 100 ms: {_status(all(t['met'] for t in headline if t['unit'] == 'ms'))}",
            ]
        )
        globs = [api[k]["median_ms"] for k in ("list_name_rare", "list_name_oldest", "list_name_substring") if k in api]
        table.append(
            [
                f"{n:,} tasks: globs matching few (suffix / oldest prefix / substring) / two filters matching none",
                " / ".join(f"{v:.0f}" for v in globs) + f" / {api['list_project_status_empty']['median_ms']:.0f} ms",
                "",
                "",
                "no target (extra rows)",
            ]
        )
        t = _target(scale["targets"], "Redis memory")
        table.append(
            [
                f"Redis memory per queued task, {n:,} tasks",
                f"{t['value']:,.0f} B",
                "",
                "",
                f"target < 2 KB: {_status(t['met'])}",
            ]
        )
    return table


def markdown(out: Path) -> str:
    lines = ["| measurement | trainyard | raw RQ | Celery | ratio / target |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(out)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results"), end="")
