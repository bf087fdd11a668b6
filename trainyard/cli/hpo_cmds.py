"""``trainyard hpo ...``: start, list, show and stop hyper-parameter studies."""

from __future__ import annotations

import json
from typing import Any

import click

from ..connection import connect
from ..controller.hpo import HyperParameterOptimizer, stop_study
from ..controller.hpo.model import StudyDoc, TrialEntry
from ..controller.hpo.optimizer import resume_study
from ..controller.hpo.spec import load_file, parse_objective, parse_param
from ..queues import studies
from ..queues.errors import InvalidInput, TaskNotFound
from ..queues.task import Task
from .output import ago, emit_json, json_option, say, styled_status, table
from .pairs import name_value_pairs


@click.group()
def hpo() -> None:
    """Hyper-parameter optimisation: studies of trials (clones of a base task) driven by Optuna."""


def _json_values(pairs: dict[str, str]) -> dict[str, Any]:
    out = {}
    for key, text in pairs.items():
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def _base_task_id(ref: str) -> str:
    """An id, or ``project/name`` (the newest task of that name)."""
    conn = connect()
    try:
        return Task.get(ref, conn).id
    except TaskNotFound:
        project, slash, name = ref.rpartition("/")
        if slash:
            try:
                return Task.get_task(project=project, name=name, connection=conn).id
            except TaskNotFound:
                pass
    raise InvalidInput(f"base task {ref!r} does not exist")


@hpo.command("start")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--base-task", help="The task to clone for each trial: an id or project/name.")
@click.option("--param", "params", multiple=True, help="NAME=KIND:ARGS, KIND: uniform, loguniform, int, choice.")
@click.option("--objective", "objective", help="TITLE/SERIES of the metric to optimise, e.g. loss/val.")
@click.option("--sign", type=click.Choice(["min", "max", "min_global", "max_global"]), help="[default: min]")
@click.option("--optimizer", help="OptimizerOptuna (optuna), RandomSearch (random), GridSearch (grid).")
@click.option("--sampler", help="An Optuna sampler: TPESampler (tpe), CmaEsSampler, GPSampler, RandomSampler ...")
@click.option("--sampler-arg", "sampler_args", multiple=True, help="NAME=VALUE passed to the sampler (JSON values).")
@click.option("--pruner", help="An Optuna pruner: MedianPruner (median), PercentilePruner, HyperbandPruner ...")
@click.option("--pruner-arg", "pruner_args", multiple=True, help="NAME=VALUE passed to the pruner (JSON values).")
@click.option("--queue", "queue", help="Queue of the trials [default: default].")
@click.option("--concurrency", type=click.IntRange(min=1), help="Trials at once [default: 10].")
@click.option("--total", type=click.IntRange(min=1), help="Trials in all [default: 10].")
@click.option("--time-limit-per-job", type=click.FloatRange(min=0, min_open=True), help="Minutes per trial.")
@click.option("--min-iteration", type=click.IntRange(min=0), help="No pruning before this step.")
@click.option("--max-iteration", type=click.IntRange(min=0), help="A trial is stopped at this step.")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), help="Minutes for the whole study.")
@click.option("--controller-queue", help="Queue of the optimiser's controller task [default: services].")
@click.option("--here", is_flag=True, help="Run the controller in this terminal until the study ends.")
@click.option("--local-trials", is_flag=True, help="With --here: run the trials here too (an in-process worker).")
def start_cmd(file, base_task, params, objective, sign, optimizer, sampler, sampler_args, pruner, pruner_args, queue,
              concurrency, total, time_limit_per_job, min_iteration, max_iteration, time_limit, controller_queue,
              here, local_trials) -> None:  # fmt: skip
    """Start a study from FILE (YAML/JSON) and/or the options (options win)."""
    settings: dict[str, Any] = load_file(file) if file else {}
    if params:
        given = [parse_param(p) for p in params]
        names = {n for p in given for n in p.distributions()}
        settings["parameters"] = [
            *[p for p in settings.get("parameters", []) if not set(p.distributions()) & names],
            *given,
        ]
    if objective:
        title, series = parse_objective(objective)
        settings["objective"] = [{"title": title, "series": series}]
    if sign:
        settings["objective"] = [{**o, "sign": sign} for o in settings.get("objective", [])]
    for key, value in {
        "base_task": base_task, "optimizer": optimizer, "queue": queue, "concurrency": concurrency, "total": total,
        "time_limit_per_job": time_limit_per_job, "min_iteration_per_job": min_iteration,
        "max_iteration_per_job": max_iteration, "optimization_time_limit": time_limit,
        "controller_queue": controller_queue,
    }.items():  # fmt: skip
        if value is not None:
            settings[key] = value
    if sampler or sampler_args:
        settings["sampler"] = _merge(settings.get("sampler"), sampler, name_value_pairs(sampler_args, "--sampler-arg"))
    if pruner or pruner_args:
        settings["pruner"] = _merge(settings.get("pruner"), pruner, name_value_pairs(pruner_args, "--pruner-arg"))
    for key, what in (("base_task", "--base-task"), ("parameters", "--param"), ("objective", "--objective")):
        if not settings.get(key):
            raise InvalidInput(f"{what} is required (or give it in a study file)")
    if local_trials and not here:
        raise InvalidInput("--local-trials needs --here")
    opt = _optimizer(settings)
    if here:
        opt.start_locally(run_trials_locally=local_trials)
        say(f"study {opt.id}: running here (Ctrl-C stops it)")
        try:
            opt.wait()
        except KeyboardInterrupt:
            opt.stop()
            opt.wait()
        _show(connect(), opt.id)
        if opt.study.status != "completed":
            raise SystemExit(1)
        return
    opt.start(queue=settings.get("controller_queue") or "services")
    say(f"study {opt.id} started: its controller is queued on {settings.get('controller_queue') or 'services'}")


def _merge(current: Any, name: str | None, args: dict[str, str]) -> dict[str, Any]:
    spec = {"name": current} if isinstance(current, str) else dict(current or {})
    if name:
        spec["name"] = name
    spec["kwargs"] = {**dict(spec.get("kwargs") or {}), **_json_values(args)}
    return spec


def _optimizer(settings: dict[str, Any]) -> HyperParameterOptimizer:
    objectives = settings["objective"]
    kwargs: dict[str, Any] = {
        "optimizer_class": settings.get("optimizer", "OptimizerOptuna"),
        "execution_queue": settings.get("queue", "default"),
        "max_number_of_concurrent_tasks": settings.get("concurrency", 10),
        "total_max_jobs": settings.get("total", 10),
        "optimization_time_limit": settings.get("optimization_time_limit"),
        "compute_time_limit": settings.get("compute_time_limit"),
        "save_top_k_tasks_only": settings.get("save_top_k"),
        "spawn_project": settings.get("spawn_project"),
        "name": settings.get("name"),
        "project": settings.get("project"),
    }
    for key in ("time_limit_per_job", "min_iteration_per_job", "max_iteration_per_job"):
        if settings.get(key) is not None:
            kwargs[key] = settings[key]
    for key in ("sampler", "pruner"):
        if settings.get(key) is not None:
            kwargs[f"optuna_{key}"] = settings[key]
    return HyperParameterOptimizer(
        _base_task_id(str(settings["base_task"])),
        settings["parameters"],
        [o["title"] for o in objectives],
        [o["series"] for o in objectives],
        [o.get("sign", "min") for o in objectives],
        **kwargs,
    )


@hpo.command("list")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
def list_cmd(limit, offset, as_json) -> None:
    """Studies, newest first."""
    conn = connect()
    docs = [StudyDoc.model_validate(d) for d in studies.load_many(conn, studies.list_ids(conn, limit, offset))]
    if as_json:
        emit_json([d.model_dump(mode="json") for d in docs])
        return
    table(
        ["study", "name", "status", "objective", "trials", "best", "created"],
        [
            (
                d.id,
                d.name,
                styled_status(d.status),
                ", ".join(f"{o.label} ({o.sign})" for o in d.objectives),
                f"{sum(d.counts.values())}/{d.total_max_jobs}",
                "" if not d.best else f"{_value(d.best['value'])} (trial {d.best['number']})",
                ago(d.created),
            )
            for d in docs
        ],
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(f"{v:.6g}" for v in value)
    return "" if value is None else f"{value:.6g}"


def _show(conn, study_id: str, as_json: bool = False) -> None:
    doc = StudyDoc.model_validate(studies.load(conn, study_id))
    entries = [TrialEntry.model_validate(e) for e in studies.trials(conn, study_id).values()]
    minimize = doc.objectives[0].direction == "minimize"

    def order(entry: TrialEntry) -> tuple:
        first = entry.value[0] if isinstance(entry.value, list) else entry.value
        return (first is None, 0 if first is None else (first if minimize else -first), entry.number)

    entries.sort(key=order)
    if as_json:
        emit_json({"study": doc.model_dump(mode="json"), "trials": [e.model_dump(mode="json") for e in entries]})
        return
    objective = ", ".join(f"{o.label} ({o.sign})" for o in doc.objectives)
    say(f"study {doc.id} {doc.name}: {doc.status}; {doc.strategy}; objective {objective}")
    if doc.message:
        say(doc.message)
    names = list(dict.fromkeys(k for e in entries for k in e.params))
    table(
        ["trial", "state", "objective", "step", *names, "task", "note"],
        [
            (
                e.number,
                styled_status(e.state),
                _value(e.value),
                "" if e.iteration is None else e.iteration,
                *[_param(e.params.get(n)) for n in names],
                e.task,
                e.reason or "",
            )
            for e in entries
        ],
    )


def _param(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value


@hpo.command("show")
@click.argument("study_id")
@json_option
def show_cmd(study_id, as_json) -> None:
    """A study's trials, best objective first, with their states and parameters."""
    _show(connect(), study_id, as_json)


@hpo.command("stop")
@click.argument("study_id")
def stop_cmd(study_id) -> None:
    """Stop a study: no new trial starts, running trials are aborted."""
    stop_study(connect(), study_id)
    say(f"study {study_id}: stop requested")


@hpo.command("resume")
@click.argument("study_id")
def resume_cmd(study_id) -> None:
    """Start a stopped or failed study's controller again: on its services queue, or here when it ran
    here. Finished trials stay; running ones are re-attached."""
    conn = connect()
    result = resume_study(conn, study_id)
    if result is None:
        say(f"study {study_id}: controller re-queued")
        return
    _show(conn, study_id)
    if result.status != "completed":
        raise SystemExit(1)
