"""Time to a running task per execution mode: venv (cold with uv or pip, cached), local, docker.

Run from the repository root::

    python benchmarks/bench_envs.py [--json-out benchmarks/results/envs.json] [--profile]

One throwaway redis-server; the workers are separate processes (``python -m trainyard worker``;
the venv ones through ``env_worker.py``, which times the environment builder's steps) started
and always stopped by this script, each measurement series with a fresh temp ``TRAINYARD_HOME``
(so an empty environment cache) and its own download caches (``UV_CACHE_DIR``, ``PIP_CACHE_DIR``,
``VIRTUALENV_OVERRIDE_APP_DATA``), so what is cached is controlled.

The measure is the time from pickup to the task's process running: the task's own start
stamp (its command prints ``time.time()`` first thing) minus the record's ``started`` time,
which the worker sets when it takes the task. Both are this host's wall clock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from common import (
    REPO,
    ChildProcesses,
    RedisServer,
    console,
    machine_facts,
    print_table,
    summarize,
    write_json,
)

import trainyard
from trainyard.queues import keys, logs

QUEUE = "bench-envs"
REQUIREMENTS = ["six==1.16.0", "idna==3.7"]
# The task everywhere: a Python process that prints its own start time first thing, then its prefix.
STAMP_CODE = "import time,sys; t=time.time(); sys.stdout.write(repr(t)+chr(10)+sys.prefix+chr(10))"
VENV_CMD = ["python", "-c", STAMP_CODE]  # "python" is the environment's (its bin/ leads PATH)
LOCAL_CMD = [sys.executable, "-c", STAMP_CODE]
# busybox `date` has no %N; its `adjtimex` (read-only, no privilege needed) prints the clock in us.
DOCKER_STAMP_CMD = ["adjtimex"]
TRUE_CMD = ["true"]  # /usr/bin/true here, the busybox applet in the container
CACHED_TARGET_S = 0.5
WAIT_S = 600.0  # longest wait for one task (a first-ever pip build reaches the network)
REGISTER_S = 60.0
SETTLE_S = 0.3
POLL_S = 0.01
GAP_S = 0.05  # between samples, so the worker is idle again
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "envs.json"
TRACE_WORKER = Path(__file__).resolve().parent / "trace_worker.py"
ENV_WORKER = Path(__file__).resolve().parent / "env_worker.py"
TESTS = REPO / "tests"


# -- workers --------------------------------------------------------------------------------------
@dataclass
class Worker:
    name: str
    home: Path
    proc: subprocess.Popen
    startup_s: float = 0.0


@dataclass
class Sample:
    task_id: str
    queued_at: float
    started: float
    stamp: float
    ended: float
    enqueue_call: float
    seen_done: float
    environment: dict[str, Any] = field(default_factory=dict)
    prefix: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def to_running(self) -> float:
        return self.stamp - self.started

    @property
    def pickup(self) -> float:
        return self.started - self.queued_at

    @property
    def roundtrip(self) -> float:
        return self.seen_done - self.enqueue_call


class Bench:
    """One Redis, the workers started on it, their homes and caches (all in one temp folder)."""

    def __init__(self, server: RedisServer, children: ChildProcesses):
        self.server = server
        self.conn = server.client()
        self.children = children
        self.root = children.directory
        self.workers: list[Worker] = []
        self.descendants: dict[int, psutil.Process] = {}
        self._count = 0
        self.conn.flushall()
        trainyard.Queue.create(QUEUE, connection=self.conn, exist_ok=True)

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, home: Path, extra: dict[str, str]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "UV_CACHE_DIR", "PIP_CACHE_DIR")
        }
        env.update(
            {
                "TRAINYARD_REDIS_URL": self.server.url,
                "TRAINYARD_HOME": str(home),
                "TRAINYARD_ARTIFACTS": str(home / "artifacts"),
                # no background wheel updates (a detached process) from virtualenv's seeder
                "VIRTUALENV_NO_PERIODIC_UPDATE": "1",
            }
        )
        env.update(extra)
        return env

    @contextlib.contextmanager
    def worker(
        self,
        series: str,
        args: list[str],
        extra_env: dict[str, str] | None = None,
        launcher: list[str] | None = None,
        home: Path | None = None,
    ) -> Iterator[Worker]:
        """A worker on a fresh TRAINYARD_HOME (or ``home``), registered and idle; stopped (with
        whatever it started) when the block ends."""
        self._count += 1
        name = f"bench-envs-{series}-{os.getpid()}-{self._count}"
        home = home or self.folder(f"home-{series}-{self._count}")
        argv = [*(launcher or [sys.executable, "-m", "trainyard"]), "worker", "-q", QUEUE, "--cpu-only"]
        argv += ["--name", name, *args]
        t0 = time.perf_counter()
        proc = self.children.start(argv, name, env=self.env(home, extra_env or {}))
        worker = Worker(name, home, proc)
        self.workers.append(worker)
        try:
            deadline = time.monotonic() + REGISTER_S
            while not self.conn.sismember(keys.WORKERS, name):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.children.tail(proc)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not register within {REGISTER_S:g}s")
                time.sleep(POLL_S)
            worker.startup_s = time.perf_counter() - t0
            time.sleep(SETTLE_S)
            yield worker
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.children.tail(proc)}")
        finally:
            self.stop(worker)

    def stop(self, worker: Worker) -> None:
        """SIGTERM (drain), then SIGKILL; then whatever it had started and left (installers run
        in their own sessions) is killed, by pid."""
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(worker.proc.pid).children(recursive=True):
                self.descendants[child.pid] = child
        self.children.stop([worker.proc])
        for child in list(self.descendants.values()):
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
                    child.wait(timeout=5)

    def leftovers(self) -> list[int]:
        alive = [w.proc.pid for w in self.workers if w.proc.poll() is None]
        alive += [p.pid for p in self.descendants.values() if _running(p)]
        return alive

    # -- tasks -----------------------------------------------------------------------------------
    def run_task(self, name: str, command: list[str], **create: Any) -> Sample:
        task = trainyard.Task.create(name, command=command, connection=self.conn, **create)
        t0 = time.time()
        task.enqueue(QUEUE)
        task.wait(timeout=WAIT_S)
        t1 = time.time()
        lines = [f"{line.stream}: {line.text}" for line in logs.read(self.conn, task.id)]
        if task.status != trainyard.TaskStatus.COMPLETED:
            raise RuntimeError(f"task {task.id} ({name}) ended {task.status.value}:\n" + "\n".join(lines[-30:]))
        record = task.data
        outs = [line.text for line in logs.read(self.conn, task.id) if line.stream == "out"]
        stamp = parse_stamp(outs) if command != TRUE_CMD else float("nan")
        prefix = next((s.strip() for s in outs if s.strip().startswith("/")), None)
        return Sample(
            task_id=task.id,
            queued_at=record.queued_at or t0,
            started=record.started or float("nan"),
            stamp=stamp,
            ended=record.ended or float("nan"),
            enqueue_call=t0,
            seen_done=t1,
            environment=dict(record.runtime.environment),
            prefix=prefix,
            log=lines,
        )


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def parse_stamp(lines: list[str]) -> float:
    """The task's start time: a line that is just a float, or busybox adjtimex's tv_sec/tv_usec."""
    fields: dict[str, int] = {}
    for text in lines:
        for raw in text.splitlines():
            line = raw.strip()
            try:
                return float(line)
            except ValueError:
                pass
            for key in ("tv_sec", "tv_usec"):
                if f"time.{key}:" in line:
                    fields[key] = int(line.rsplit(":", 1)[1])
    if len(fields) == 2:
        return fields["tv_sec"] + fields["tv_usec"] / 1e6
    raise RuntimeError(f"no start stamp in the task's output: {lines[:5]}")


def env_meta(home: Path) -> list[dict[str, Any]]:
    """The metadata of every environment in a worker's cache (build_seconds, installer...)."""
    found = []
    for meta in sorted((home / "envs").glob("*/trainyard-env.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(meta.read_text()))
    return found


def wipe_env_cache(home: Path) -> None:
    """Empty a worker's environment cache (the worker is idle: nothing holds an environment)."""
    shutil.rmtree(home / "envs", ignore_errors=True)


# -- 1. venv mode ---------------------------------------------------------------------------------
def probe_installer_flag(bench: Bench) -> dict[str, Any]:
    """Does ``trainyard worker --installer pip`` reach the environment builder? One venv task
    without requirements (a bare virtualenv) on a worker started with the flag; its record says
    which installer built the environment."""
    with bench.worker("probe", ["--mode", "venv", "--installer", "pip"]) as worker:
        sample = bench.run_task("probe-installer", VENV_CMD, mode="venv", requirements=[])
    used = sample.environment.get("installer")
    honoured = used == "pip"
    note = (
        "honoured"
        if honoured
        else f"IGNORED: the worker asked for pip built with {used!r} (trainyard/cli/worker_cmds.py builds "
        "WorkerConfig without installer, env_cache_size, docker_image, docker_network)"
    )
    console.print(f"  probe: `trainyard worker --installer pip` -> {note}", style="dim" if honoured else "yellow")
    return {"flag": "--installer pip", "installer_used": used, "honoured": honoured, "worker": worker.name}


def venv_series(bench: Bench, installer: str, cold: int, cached: int, forward: bool) -> dict[str, Any]:
    """One worker (``--mode venv --installer X``) on a fresh home and empty download caches:
    a first-ever cold build, then ``cold`` cold builds with warm download caches (the env cache
    emptied before each), then ``cached`` runs in the cached environment, then the environment's
    interpreter started by hand (the floor)."""
    cache_dirs = {
        "UV_CACHE_DIR": bench.folder(f"cache-{installer}/uv"),
        "PIP_CACHE_DIR": bench.folder(f"cache-{installer}/pip"),
        "VIRTUALENV_OVERRIDE_APP_DATA": bench.folder(f"cache-{installer}/virtualenv"),
    }
    steps_file = bench.root / f"steps-{installer}.jsonl"
    launcher = [sys.executable, str(ENV_WORKER), "--steps", str(steps_file)]
    if forward:
        launcher.append("--forward-flags")
    out: dict[str, Any] = {"installer_flag": installer, "flags_forwarded_by_launcher": forward}
    caches = {k: str(v) for k, v in cache_dirs.items()}
    rows: dict[str, list[Sample]] = {"first": [], "cold": [], "cached": []}
    builds: dict[str, list[float]] = {"first": [], "cold": []}
    with bench.worker(f"venv-{installer}", ["--mode", "venv", "--installer", installer], caches, launcher) as worker:
        out["worker_startup_s"] = round(worker.startup_s, 3)
        for kind, count in (("first", 1), ("cold", cold)):
            for i in range(count):
                wipe_env_cache(worker.home)
                time.sleep(GAP_S)
                sample = bench.run_task(
                    f"venv-{installer}-{kind}-{i}", VENV_CMD, mode="venv", requirements=REQUIREMENTS
                )
                check_env(sample, cached=False, installer=installer)
                rows[kind].append(sample)
                builds[kind] += [m.get("build_seconds", float("nan")) for m in env_meta(worker.home)]
                progress(f"venv {installer} {kind}", sample)
            if kind == "first":
                out["download_caches_after_first_mib"] = {k: round(du(v) / 2**20, 2) for k, v in cache_dirs.items()}
        by_hand: list[float] = []
        for i in range(cached):
            time.sleep(GAP_S)
            sample = bench.run_task(f"venv-{installer}-cached-{i}", VENV_CMD, mode="venv", requirements=REQUIREMENTS)
            check_env(sample, cached=True, installer=installer)
            rows["cached"].append(sample)
            # the floor, in the same minutes: the environment's interpreter started by hand
            bindir = worker.home / "envs" / str(sample.environment.get("key")) / "bin"
            by_hand += start_by_hand(VENV_CMD, {"PATH": f"{bindir}:{os.environ['PATH']}"}, 1)
        progress(f"venv {installer} cached", *rows["cached"])
        environment = rows["cached"][0].environment
        out["packages"] = environment.get("packages")
        out["env_key"] = environment.get("key")
    steps = [json.loads(line) for line in steps_file.read_text().splitlines()] if steps_file.exists() else []
    for kind, samples in rows.items():
        out[kind] = entry(samples, builds.get(kind))
        if kind != "cached":
            out[kind]["steps_s"] = step_times(samples, steps)
    out["cached"]["by_hand_s"] = rounded(summarize(by_hand))
    return out


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


STEP_NAMES = (("creating the virtualenv", "virtualenv"), ("listing installed", "freeze"), (" install of ", "install"))


def step_times(samples: list[Sample], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds of each environment-builder step within the samples' pickup -> running
    windows, and of what is left (lookups, locks, metadata, the task's own start)."""
    per: dict[str, list[float]] = {}
    for s in samples:
        seen = {name: 0.0 for _, name in STEP_NAMES}
        for step in steps:
            if s.started <= step["start"] <= s.stamp:
                name = next((n for key, n in STEP_NAMES if key in step["what"]), step["what"])
                seen[name] = seen.get(name, 0.0) + step["end"] - step["start"]
        seen["rest"] = s.to_running - sum(seen.values())
        for name, value in seen.items():
            per.setdefault(name, []).append(value)
    return {name: round(summarize(values)["median"], 4) for name, values in per.items()}


def start_by_hand(argv: list[str], extra_env: dict[str, str], count: int) -> list[float]:
    """Seconds from Popen to the command's own stamp, started by hand ``count`` times."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra_env)
    values = []
    for _ in range(count):
        t0 = time.time()
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
        values.append(parse_stamp([out]) - t0)
    return values


def check_env(sample: Sample, cached: bool, installer: str) -> None:
    env = sample.environment
    if env.get("mode") != "venv" or bool(env.get("cached")) != cached:
        raise RuntimeError(f"task {sample.task_id}: expected a {'cached' if cached else 'new'} venv, got {env}")
    if not sample.prefix or "/envs/" not in sample.prefix:
        raise RuntimeError(f"task {sample.task_id} did not run in the environment (sys.prefix {sample.prefix})")
    if env.get("installer") != installer:
        console.print(f"  warning: {installer} worker built with {env.get('installer')!r}", style="yellow")


def entry(samples: list[Sample], builds: list[float] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "samples": len(samples),
        "to_running_s": rounded(summarize([s.to_running for s in samples])),
        "pickup_ms": rounded(summarize([s.pickup * 1000 for s in samples])),
        "roundtrip_s": rounded(summarize([s.roundtrip for s in samples])),
        "installer": sorted({str(s.environment["installer"]) for s in samples if s.environment.get("installer")}),
        "values_s": [round(s.to_running, 4) for s in samples],
        "task_ids": [s.task_id for s in samples],
    }
    if builds:
        result["build_seconds"] = rounded(summarize(builds))
    return result


def rounded(stats: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in stats.items()}


def progress(label: str, *samples: Sample) -> None:
    values = [s.to_running for s in samples]
    console.print(
        f"  {label}: pickup -> running median {summarize(values)['median']:.3f} s ({len(values)} samples)", style="dim"
    )


# -- 2 and 3. local and docker mode -----------------------------------------------------------
def docker_image() -> tuple[str | None, str]:
    """The busybox test image (imported the way the tests do), or None and why not."""
    sys.path.insert(0, str(TESTS))
    try:
        import dockerimages  # tests/dockerimages.py
    finally:
        sys.path.remove(str(TESTS))
    engine = dockerimages.docker_engine()
    if engine is None:
        return None, "no Docker engine answers"
    try:
        image = dockerimages.ensure_busybox_image(engine)
        version = engine.version().get("Version", "?")
    except Exception as exc:
        return None, f"busybox image: {exc}"
    finally:
        engine.close()
    return image, f"docker {version}"


def local_docker_series(bench: Bench, samples: int, warmup: int, image: str | None) -> dict[str, Any]:
    """One worker (``--mode local``) serving local and docker tasks alternately (the task's mode
    wins), so both are measured in the same minutes: the start stamp task and ``true``."""
    kinds: dict[str, tuple[list[str], dict[str, Any]]] = {
        "local_stamp": (LOCAL_CMD, {}),
        "local_true": (TRUE_CMD, {}),
    }
    if image:
        kinds["docker_stamp"] = (DOCKER_STAMP_CMD, {"mode": "docker", "docker_image": image})
        kinds["docker_true"] = (TRUE_CMD, {"mode": "docker", "docker_image": image})
    got: dict[str, list[Sample]] = {k: [] for k in kinds}
    hand: dict[str, list[float]] = {"local_stamp": [], "docker_stamp": []}
    engine = docker_client() if image else None
    try:
        with bench.worker("local-docker", ["--mode", "local"]) as worker:
            for i in range(warmup + samples):
                for kind, (command, create) in kinds.items():
                    time.sleep(GAP_S)
                    sample = bench.run_task(f"{kind}-{i}", command, **create)
                    if i >= warmup:
                        got[kind].append(sample)
                    expected = "docker" if kind.startswith("docker") else None
                    if expected and sample.environment.get("mode") != expected:
                        raise RuntimeError(f"task {sample.task_id} ran as {sample.environment} rather than docker")
                # the floors, in the same rounds
                local = start_by_hand(LOCAL_CMD, {}, 1)
                docker = docker_by_hand(engine, image, 1) if engine is not None and image else []
                if i >= warmup:
                    hand["local_stamp"] += local
                    hand["docker_stamp"] += docker
            startup = worker.startup_s
    finally:
        if engine is not None:
            engine.close()
    out: dict[str, Any] = {"worker_startup_s": round(startup, 3), "warmup": warmup}
    for kind, values in got.items():
        if kind.endswith("_stamp"):
            out[kind] = entry(values)
            progress(kind.replace("_", " "), *values)
        else:
            out[kind] = {
                "samples": len(values),
                "roundtrip_s": rounded(summarize([s.roundtrip for s in values])),
                "started_to_ended_s": rounded(summarize([s.ended - s.started for s in values])),
                "pickup_ms": rounded(summarize([s.pickup * 1000 for s in values])),
            }
    for kind, values in hand.items():
        if values:
            out[kind]["by_hand_s"] = rounded(summarize(values))
    return out


BY_HAND_LABEL = f"bench-envs-by-hand-{os.getpid()}"  # the label value of the containers started by hand


def docker_client():
    import docker

    return docker.from_env(timeout=30)


def docker_by_hand(engine, image: str, count: int) -> list[float]:
    """Seconds from the Docker SDK's ``containers.run`` call to the container's own stamp (no
    mounts, no attach, the host's network as trainyard picks on an engine without a bridge):
    the floor for docker mode on this engine."""
    network = "bridge" if "bridge" in {n.name for n in engine.networks.list()} else "host"
    values = []
    for _ in range(count):
        t0 = time.time()
        out = engine.containers.run(
            image, DOCKER_STAMP_CMD, remove=True, network_mode=network, labels={"trainyard.worker": BY_HAND_LABEL}
        )
        values.append(parse_stamp([out.decode()]) - t0)
    return values


# -- where the time goes (cached venv) ----------------------------------------------------------
STAGES = [  # recorded by trace_worker.py; times since the record's `started`
    ("start_end", "start transaction done (record running)"),
    ("run_begin", "task thread running"),
    ("run_folder_end", "run folder created"),
    ("reporter_end", "Reporter started"),
    ("prepare_end", "launch spec prepared (prepare step: env lookup...)"),
    ("spawn_begin", "Popen called"),
    ("spawn_end", "Popen returned"),
    ("process_start", "task process's own stamp"),
]
PREPARE_FOCUS = [  # (file, function) of the prepare path in the cProfile stats
    ("preparer.py", "__call__"),
    ("preparer.py", "_code"),
    ("_environment.py", "prepare"),
    ("cache.py", "key"),
    ("venv.py", "installer"),
    ("tools.py", "find_uv"),
    ("tools.py", "_works"),
    ("spec.py", "env_key"),
    ("cache.py", "ensure_and_hold"),
    ("cache.py", "_hit"),
    ("cache.py", "_lock"),
    ("cache.py", "_metadata"),
    ("cache.py", "_write_metadata"),
    ("preparer.py", "_record_environment"),
    ("store.py", "update"),
    ("tasklib.py", "link"),
    ("launch.py", "task_env"),
    ("process.py", "spawn"),
    ("subprocess.py", "_execute_child"),
]


def profile_cached(bench: Bench, samples: int, out_stem: Path) -> dict[str, Any]:
    """Cached venv tasks through trace_worker.py (stage stamps; after one untimed build), then
    again with every worker thread under cProfile, on the same home (cache hits only)."""
    pstats_path = out_stem.with_suffix(".venv-cached.pstats")
    pstats_path.parent.mkdir(parents=True, exist_ok=True)
    caches = {"UV_CACHE_DIR": str(bench.folder("cache-uv/uv")), "PIP_CACHE_DIR": str(bench.folder("cache-uv/pip"))}
    result: dict[str, Any] = {}
    home = bench.folder("home-profile")
    for key, cprofile in (("traced", None), ("cprofiled", pstats_path)):
        trace = bench.root / f"trace-{key}.jsonl"
        launcher = [sys.executable, str(TRACE_WORKER), "--trace", str(trace)]
        if cprofile is not None:
            launcher += ["--cprofile", str(cprofile)]
        measured: list[Sample] = []
        with bench.worker(f"profile-{key}", ["--mode", "venv"], caches, launcher, home=home):
            if cprofile is None:
                bench.run_task(f"profile-{key}-build", VENV_CMD, mode="venv", requirements=REQUIREMENTS)
            for i in range(samples):
                time.sleep(GAP_S)
                measured.append(bench.run_task(f"profile-{key}-{i}", VENV_CMD, mode="venv", requirements=REQUIREMENTS))
        points: dict[str, dict[str, float]] = {}
        for raw in trace.read_text().splitlines():
            item = json.loads(raw)
            points.setdefault(item["task"], {}).setdefault(item["stage"], item["t"])
        rows = []
        for stage, label in STAGES:
            values = []
            for s in measured:
                t = s.stamp if stage == "process_start" else points.get(s.task_id, {}).get(stage)
                if t is not None:
                    values.append((t - s.started) * 1000)
            if values:
                stats = summarize(values)
                rows.append(
                    {"stage": stage, "label": label, "median_ms": round(stats["median"], 3), "count": len(values)}
                )
        result[key] = {
            "samples": len(measured),
            "to_running_median_ms": round(summarize([s.to_running * 1000 for s in measured])["median"], 3),
            "stages": rows,
        }
    if pstats_path.exists():
        result["pstats"] = str(pstats_path)
        result["functions"] = focus_rows(str(pstats_path), samples)
    return result


def focus_rows(path: str, tasks: int) -> list[dict[str, Any]]:
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    rows = []
    for file_name, function in PREPARE_FOCUS:
        for (filename, line, name), (prim, calls, _tottime, cumtime, _) in stats.items():
            if name == function and (filename == file_name or filename.endswith("/" + file_name)):
                rows.append(
                    {
                        "function": f"{file_name}:{line}({name})",
                        "calls": calls,
                        "cum_ms_per_task": round(cumtime / tasks * 1000, 3),
                        "cum_ms_per_call": round(cumtime / prim * 1000, 3) if prim else 0.0,
                    }
                )
    return rows


def print_profile(profile: dict[str, Any]) -> None:
    for key, title in (("traced", "stage stamps"), ("cprofiled", "same, under cProfile (slower)")):
        data = profile.get(key)
        if not data:
            continue
        rows, previous = [], 0.0
        for row in data["stages"]:
            rows.append([row["label"], f"{row['median_ms']:.2f}", f"{row['median_ms'] - previous:+.2f}", row["count"]])
            previous = row["median_ms"]
        print_table(
            f"Cached venv task, {title}: ms since the record's `started` ({data['samples']} samples, "
            f"pickup -> running median {data['to_running_median_ms']:.1f} ms)",
            ["stage", "median", "step", "seen"],
            rows,
        )
    if profile.get("functions"):
        print_table(
            "Cached venv task: prepare-path functions under cProfile (every worker thread)",
            ["function", "calls", "cumulative ms per task", "cumulative ms per call"],
            [
                [r["function"], r["calls"], f"{r['cum_ms_per_task']:.2f}", f"{r['cum_ms_per_call']:.2f}"]
                for r in profile["functions"]
            ],
            caption=f"whole profile: {profile.get('pstats')} (python -m pstats); cache hits only",
        )


# -- report -------------------------------------------------------------------------------------
def report(venv: dict[str, dict], mixed: dict[str, Any], docker_note: str) -> list[dict[str, Any]]:
    def row(label: str, data: dict[str, Any], cache: str) -> list[str]:
        t = data["to_running_s"]
        build = data.get("build_seconds", {}).get("median")
        hand = data.get("by_hand_s", {}).get("median")
        return [
            label,
            ",".join(data.get("installer") or []) or "-",
            cache,
            str(data["samples"]),
            f"{t['median']:.3f}",
            f"{t['max']:.3f}",
            "-" if build is None else f"{build:.2f}",
            "-" if hand is None else f"{hand:.3f}",
            "-" if hand is None else f"{(t['median'] - hand) * 1000:+.1f}",
            f"{data['pickup_ms']['median']:.1f}",
        ]

    rows = []
    for data in venv.values():
        rows.append(row("venv cold, first ever", data["first"], "empty"))
        rows.append(row("venv cold", data["cold"], "warm"))
    for data in venv.values():
        rows.append(row("venv cached env", data["cached"], "-"))
    rows.append(row("local (reference)", mixed["local_stamp"], "-"))
    if "docker_stamp" in mixed:
        rows.append(row("docker (busybox)", mixed["docker_stamp"], "-"))
    print_table(
        "Time to a running task: record `started` (pickup) -> the task process's own start stamp (seconds)",
        [
            "case",
            "installer",
            "dl cache",
            "n",
            "median s",
            "max s",
            "env build s",
            "by hand s",
            "- by hand ms",
            "pickup ms",
        ],
        rows,
        caption=(
            "cold: empty environment cache (fresh TRAINYARD_HOME, or emptied); dl cache: the series' own "
            "UV_CACHE_DIR / PIP_CACHE_DIR / virtualenv app data, empty for 'first ever', filled by it for the others; "
            "env build: the env's own build_seconds; by hand: the same command started with subprocess (venv/local) "
            "or the Docker SDK's containers.run (docker), call -> stamp, median; - by hand: median - by hand; "
            "pickup: queued_at -> started (round trips: in the JSON); the docker task's stamp is busybox adjtimex"
        ),
    )
    local = mixed["local_stamp"]["to_running_s"]["median"]
    overhead_rows = []
    for installer, data in venv.items():
        c = data["cached"]["to_running_s"]["median"]
        overhead_rows.append([f"venv cached ({installer} worker) - local", f"{(c - local) * 1000:+.1f}"])
    if "docker_stamp" in mixed:
        d = mixed["docker_stamp"]["to_running_s"]["median"]
        overhead_rows.append(["docker - local, to a running task", f"{(d - local) * 1000:+.1f}"])
        lt, dt_ = mixed["local_true"], mixed["docker_true"]
        overhead_rows.append(
            [
                "docker - local, `true` round trip",
                f"{(dt_['roundtrip_s']['median'] - lt['roundtrip_s']['median']) * 1000:+.1f}",
            ]
        )
    print_table("Overhead against local mode (medians, ms)", ["difference", "ms"], overhead_rows)

    step_rows = []
    for installer, data in venv.items():
        for kind, label in (("first", "first ever"), ("cold", "warm download cache")):
            steps = data[kind].get("steps_s") or {}
            step_rows.append(
                [
                    f"venv cold, {label} ({installer})",
                    f"{data[kind]['to_running_s']['median']:.3f}",
                    *(f"{steps.get(name, 0.0):.3f}" for name in ("virtualenv", "install", "freeze", "rest")),
                ]
            )
    print_table(
        "Where a cold environment's time goes (medians, seconds; installer steps timed in the worker by env_worker.py)",
        ["case", "pickup -> running", "virtualenv", "uv/pip install", "freeze", "rest"],
        step_rows,
        caption="rest: everything else between pickup and the task's stamp (lookups, locks, metadata, the task's "
        "own interpreter start)",
    )

    if "docker_true" in mixed:
        print_table(
            f"`true` task, enqueue call -> completed seen by the client ({docker_note}), same worker, alternated",
            ["mode", "samples", "median s", "p90 s", "min s", "max s", "started -> ended s", "pickup ms"],
            [
                [
                    label,
                    str(mixed[k]["samples"]),
                    f"{mixed[k]['roundtrip_s']['median']:.3f}",
                    f"{mixed[k]['roundtrip_s']['p90']:.3f}",
                    f"{mixed[k]['roundtrip_s']['min']:.3f}",
                    f"{mixed[k]['roundtrip_s']['max']:.3f}",
                    f"{mixed[k]['started_to_ended_s']['median']:.3f}",
                    f"{mixed[k]['pickup_ms']['median']:.1f}",
                ]
                for k, label in (("local_true", "local"), ("docker_true", "docker (busybox)"))
            ],
        )
    else:
        console.print(f"docker mode skipped: {docker_note}", style="yellow")

    targets = []
    for installer, data in venv.items():
        value = data["cached"]["to_running_s"]["median"]
        targets.append(
            {
                "target": f"cached environment: task running under {CACHED_TARGET_S:g} s after pickup in venv mode "
                f"({installer} worker, median)",
                "value": value,
                "threshold": CACHED_TARGET_S,
                "unit": "s",
                "met": value < CACHED_TARGET_S,
            }
        )
    print_table(
        "Targets",
        ["target", "value", "threshold", "status"],
        [
            [
                t["target"],
                f"{t['value']:.3f} s",
                f"{t['threshold']:g} s",
                "[green]met[/]" if t["met"] else "[red]missed[/]",
            ]
            for t in targets
        ],
    )
    return targets


def installer_facts() -> dict[str, Any]:
    """What decides where the installers download from on this machine."""
    facts: dict[str, Any] = {
        "env": {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "UV_", "VIRTUALENV_"))},
    }
    for name, argv in (
        ("uv", ["uv", "--version"]),
        ("pip", [sys.executable, "-m", "pip", "--version"]),
        ("virtualenv", [sys.executable, "-m", "virtualenv", "--version"]),
        ("pip_config", [sys.executable, "-m", "pip", "config", "list"]),
    ):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = None
        facts[name] = out.splitlines() if name == "pip_config" and out else out
    return facts


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the context managers: workers are stopped


def remove_containers(worker_names: set[str]) -> int:
    """Containers labelled with one of this run's workers (the worker removes its own; this is
    the safety net). Returns how many were left."""
    try:
        import docker

        engine = docker.from_env(timeout=30)
    except Exception:
        return 0
    left = 0
    try:
        for container in engine.containers.list(all=True, filters={"label": "trainyard.worker"}):
            if container.labels.get("trainyard.worker") in worker_names:
                left += 1
                with contextlib.suppress(Exception):
                    container.remove(force=True)
    finally:
        engine.close()
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", type=Path, default=DEFAULT_JSON, help="result file (default: %(default)s)")
    parser.add_argument(
        "--cold", type=int, default=4, help="cold builds with warm download caches, per installer (default 4)"
    )
    parser.add_argument(
        "--cached", type=int, default=20, help="runs in the cached environment, per installer (default 20)"
    )
    parser.add_argument("--samples", type=int, default=20, help="local and docker samples of each kind (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed local/docker rounds first (default 2)")
    parser.add_argument("--installers", default="uv,pip", help="venv installers to measure (default uv,pip)")
    parser.add_argument("--no-docker", action="store_true", help="skip docker mode")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="stage stamps and cProfile of cached venv tasks (done anyway when the cached target is missed)",
    )
    parser.add_argument("--profile-samples", type=int, default=10)
    args = parser.parse_args(argv)
    installers = [i.strip() for i in args.installers.split(",") if i.strip()]
    if not installers or any(i not in ("uv", "pip") for i in installers):
        parser.error("--installers: uv and/or pip")
    if min(args.cold, args.cached, args.samples, args.profile_samples) < 1 or args.warmup < 0:
        parser.error("--cold, --cached, --samples and --profile-samples must be at least 1")

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    image, docker_note = (None, "--no-docker") if args.no_docker else docker_image()
    with RedisServer() as server, ChildProcesses(prefix="trainyard-bench-envs-") as children:
        bench = Bench(server, children)
        try:
            facts = machine_facts(bench.conn)
            facts["installers"] = installer_facts()
            facts["docker"] = docker_note
            console.print(
                f"redis {facts['redis_version']} at {server.url}, python {facts['python']}, {facts['cpu_count']} CPUs; "
                f"requirements {REQUIREMENTS}; {docker_note}"
            )
            probe = probe_installer_flag(bench) if "pip" in installers else None
            venv: dict[str, dict] = {}
            for installer in installers:
                forward = installer == "pip" and probe is not None and not probe["honoured"]
                venv[installer] = venv_series(bench, installer, args.cold, args.cached, forward)
            mixed = local_docker_series(bench, args.samples, args.warmup, image)
            targets = report(venv, mixed, docker_note)
            profile = None
            if args.profile or not all(t["met"] for t in targets):
                try:
                    profile = profile_cached(bench, args.profile_samples, args.json_out)
                    print_profile(profile)
                except Exception as exc:  # the measurements above still get written
                    profile = {"error": f"{type(exc).__name__}: {exc}"}
                    console.print(f"profile failed: {profile['error']}", style="red")
        finally:
            names = {w.name for w in bench.workers} | {BY_HAND_LABEL}
            for worker in bench.workers:
                bench.stop(worker)
            left_containers = remove_containers(names)
            left_procs = bench.leftovers()
            bench.conn.close()
    wall = time.perf_counter() - started
    console.print(
        f"cleanup: {len(bench.workers)} workers stopped; processes still alive: {left_procs or 'none'}; "
        f"containers of this run removed at the end: {left_containers}"
    )

    payload = {
        "requirements": REQUIREMENTS,
        "commands": {"venv": VENV_CMD, "local": LOCAL_CMD, "docker_stamp": DOCKER_STAMP_CMD, "true": TRUE_CMD},
        "docker_image": image,
        "installer_flag_probe": probe,
        "venv": venv,
        "local_docker": mixed,
        "targets": targets,
        "profile": profile,
        "cleanup": {"processes_left": left_procs, "containers_removed_at_end": left_containers},
        "wall_seconds": round(wall, 3),
    }
    path = write_json(args.json_out, "envs", payload, facts)
    console.print(f"results written to {path} (ran {wall:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
