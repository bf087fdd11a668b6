"""The job runner: runs one job's steps in order, in one working folder (standard library only).

A job of a pipeline file becomes one task. That task runs this module (``python -m
trainyard_runtime.jobrun``, the in-task runtime being on every task's path), which reads the job
from the task's configuration (``task.json`` in the run folder, through ``task_api``), runs each step, and reports
the job's outputs as the task's outputs. The first failing step stops the job (exit code 1).

* ``run`` steps: ``bash -e -o pipefail -c TEXT`` (``sh -e -c`` without bash). TEXT is the command as
  written in the file, with each ``${{ expr }}`` replaced by ``${TRAINYARD_EXPR_n}``; the values
  travel in the environment only, never inside shell text.
* ``action`` steps: inputs are checked and cast to their declared types, passed as ``INPUT_<NAME>``
  environment variables and as arguments (``runs.args``, or the inputs as one JSON argument).
* Outputs: every step gets ``TRAINYARD_OUTPUT`` (and ``GITHUB_OUTPUT``), a file it appends
  ``name=value`` lines (or ``name<<EOF`` ... ``EOF`` blocks) to. A value that parses as JSON keeps
  that type; declared action outputs are cast to their declared type. DataTorch actions
  (``action-datatorch.yaml``) print ``::name::<json>`` lines instead, declared or not.
* A step's outputs are ``steps.<id or name>.outputs``; ``variable`` holds every earlier step's
  outputs (DataTorch's job-wide set, the last writer wins).
* DataTorch actions find a stand-in ``datatorch`` module first on their path (``datatorch_path/``).
* ``cache: true`` on an action step (or in the action file) reuses the outputs of an earlier run of
  the same action commit with the same inputs on this machine.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import expr, junit
from .task_api import ENV_RUN_DIR, TASK_FILE, current_task

JOB_KEY = "trainyard.job"
NEEDS_KEY = "trainyard.needs"
ENV_NAME = re.compile(r"[^A-Z0-9]")
GRACE_S = 5.0
LATEST = "latest"  # DataTorch's tag for an action's default branch
DATATORCH_PATH = Path(__file__).resolve().parent / "datatorch_path"  # holds the stand-in datatorch.py


class StepFailed(Exception):
    """A step that did not succeed (the message says why)."""


class ProcessFailed(StepFailed):
    """A step's process exited non-zero: its own last stderr line says why, not this message."""


# -- helpers shared with the controller side ------------------------------------------------------


def duration_s(value: Any) -> float | None:
    """``90``, ``"90s"``, ``"30m"``, ``"2h"`` -> seconds (a bare number means seconds)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
    if not match:
        raise ValueError(f"bad duration {value!r} (e.g. 90, '90s', '30m', '2h')")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def input_env_name(name: str) -> str:
    """``max-count`` -> ``INPUT_MAX_COUNT``."""
    return "INPUT_" + ENV_NAME.sub("_", name.upper())


def cast_input(name: str, kind: str, value: Any) -> Any:
    """A value checked against a declared type (strings from the CLI or templates are converted)."""
    if value is None:
        return None
    try:
        if kind == "string":
            if isinstance(value, (dict, list)):
                raise ValueError("a list or mapping is not a string")
            return expr.as_text(value)
        if kind in ("number", "float"):
            if isinstance(value, bool):
                raise ValueError("a boolean is not a number")
            number = float(value)
            return int(number) if kind == "number" and number.is_integer() else number
        if kind == "integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("not a whole number")
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off", ""):
                return False
            raise ValueError("not true or false")
        if kind in ("array", "list"):
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, list):
                raise ValueError("not a list")
            return value
        if kind == "object":
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError("not a mapping")
            return value
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {value!r} is not a valid {kind} ({exc})") from None
    return value


def check_inputs(declared: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Declared action inputs applied to the given ones: defaults, required, types, options."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"unknown input(s) {', '.join(unknown)} (declared: {', '.join(declared) or 'none'})")
    out = {}
    for name, spec in declared.items():
        value = given.get(name)
        if value is None:
            value = spec.get("default")
        if value is None:
            if spec.get("required"):
                raise ValueError(f"missing required input {name!r}")
            out[name] = None
            continue
        value = cast_input(name, spec.get("type") or "string", value)
        if spec.get("options") and value not in spec["options"]:
            raise ValueError(f"{name}: {value!r} is not one of {spec['options']}")
        out[name] = value
    return out


def read_outputs(path: Path) -> dict[str, Any]:
    """``name=value`` lines and ``name<<DELIM`` blocks; values that parse as JSON keep their type."""
    if not path.exists():
        return {}
    lines = path.read_text(errors="replace").splitlines()
    out: dict[str, Any] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, _, delim = line.partition("<<")
            block = []
            while i < len(lines) and lines[i] != delim:
                block.append(lines[i])
                i += 1
            if i >= len(lines):
                raise StepFailed(f"output {name!r}: no closing {delim!r} line in the output file")
            i += 1
            out[name.strip()] = "\n".join(block)
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise StepFailed(f"bad line in the output file: {line[:80]!r} (expected name=value)")
        out[name.strip()] = _json_or_text(value)
    return out


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def git_cache_dir(cache_root: Path, url: str, tag: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tag)
    return cache_root / digest / safe


def _head(folder: Path) -> str:
    proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip()


def fetch_git(url: str, tag: str, cache_root: Path, sha: str | None = None) -> tuple[Path, str]:
    """A cached shallow clone of ``url`` at ``tag``: (folder, commit). With ``sha``, the tag must still
    point at that commit (a moved tag is refused, not silently run). ``latest`` is the default branch,
    fetched again unless the cached clone is already at ``sha`` (DataTorch re-downloads it every run)."""
    target = git_cache_dir(cache_root, url, tag)
    if tag == LATEST and (target / ".git").exists() and (sha is None or _head(target) != sha):
        stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=str(target.parent)))
        with contextlib.suppress(OSError):
            os.rename(target, stale / "c")
        shutil.rmtree(stale, ignore_errors=True)
    if not (target / ".git").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=str(target.parent)))
        try:
            env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
            branch = [] if tag == LATEST else ["--branch", tag]
            proc = subprocess.run(
                ["git", "clone", "-q", "--depth", "1", "--single-branch", *branch, "--", url, str(tmp / "c")],
                capture_output=True,
                text=True,
                env=env,
            )
            if proc.returncode != 0:
                detail = (proc.stderr.strip().splitlines() or ["git clone failed"])[-1]
                shown = re.sub(r"(://)[^/@\s]+@", r"\1***@", f"{url} at {tag!r}: {detail}")
                raise StepFailed(f"cannot fetch action {shown}")
            clean = re.sub(r"(://)[^/@\s]+@", r"\1", url)
            if clean != url:  # no token left on disk in the cached clone
                subprocess.run(["git", "-C", str(tmp / "c"), "remote", "set-url", "origin", clean], check=False)
            try:
                os.rename(tmp / "c", target)
            except OSError:
                if not (target / ".git").exists():  # another process won the race: use theirs
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    commit = _head(target)
    if sha and commit != sha:
        raise StepFailed(f"action {url}@{tag} is at commit {commit[:12]} here, but {sha[:12]} was checked")
    return target, commit


def unpack_files(files: dict[str, Any], target: Path) -> Path:
    """An action folder embedded as {relative path: {"data": base64, "mode": int}}."""
    for rel, entry in files.items():
        path = (target / rel).resolve()
        if target.resolve() not in path.parents:
            raise StepFailed(f"action file {rel!r} points outside the action folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(entry["data"]))
        os.chmod(path, entry.get("mode", 0o644) & 0o755)
    return target


# -- running a job ----------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def refuse(text: str) -> None:
    """A failure the job runner found itself: on stderr, whose last line becomes the task's error."""
    sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)


class JobRunner:
    def __init__(self, spec: dict[str, Any], needs: dict[str, Any], run_dir: Path):
        self.spec = spec
        self.run_dir = run_dir
        self.workspace = run_dir / "workspace"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.context: dict[str, Any] = dict(spec.get("context") or {})
        self.context["jobs"] = {name: {"outputs": outs} for name, outs in (needs or {}).items()}
        self.context["needs"] = self.context["jobs"]
        self.context["steps"] = {}
        self.context["variable"] = {}
        self.context["env"] = {}
        self.context.setdefault("vars", {})
        self.context["secrets"] = {name: os.environ.get(name, "") for name in spec.get("secrets") or ()}
        home = os.environ.get("TRAINYARD_HOME") or str(Path.home() / ".trainyard")
        self.cache_root = Path(os.environ.get("TRAINYARD_ACTIONS_CACHE") or Path(home) / "actions")

    def run(self) -> int:
        steps = self.spec["steps"]
        say(f"job {self.spec['job']}: {len(steps)} step(s) in {self.workspace}")
        try:
            env = self.spec.get("env") or {}
            self.context["env"] = {k: expr.as_text(self._render(v)) for k, v in env.items()}
        except StepFailed as exc:
            refuse(f"✗ job env: {exc}")
            return 1
        for index, step in enumerate(steps):
            label = step.get("label") or f"step {index + 1}"
            try:
                wanted = expr.condition(step.get("if"), self.context)
            except expr.ExpressionError as exc:
                refuse(f"✗ {label}: if: {exc}")
                return 1
            if not wanted:
                say(f"- {label}: skipped (if: {step.get('if')})")
                self._record(step, {}, "skipped")
                continue
            say(f"▶ {label}")
            start = time.monotonic()
            failure: StepFailed | None = None
            try:
                outputs = self._step(index, step)
            except StepFailed as exc:
                failure = exc
            if step.get("tests"):
                verdict = self._tests(index, step)
                if failure is None and verdict:
                    failure = StepFailed(verdict)
            if failure is not None:
                (say if isinstance(failure, ProcessFailed) else refuse)(f"✗ {label}: {failure}")
                self._record(step, {}, "failure")
                rest = len(steps) - index - 1
                if rest:
                    say(f"skipping the remaining {rest} step(s) of job {self.spec['job']}")
                return 1
            say(f"✓ {label} ({time.monotonic() - start:.1f}s)")
            self._record(step, outputs, "success")
            self.context["variable"].update(outputs)
        outputs = {}
        for name, value in (self.spec.get("outputs") or {}).items():
            try:
                outputs[name] = self._render(value)
            except StepFailed as exc:  # e.g. the output of a step skipped by its `if`: null, as a note
                say(f"job output {name!r} is null: {exc}")
                outputs[name] = None
        self._report(outputs)
        return 0

    def _tests(self, index: int, step: dict[str, Any]) -> str | None:
        """Read the step's JUnit reports, store them as its artifact; why it fails, if it must."""
        wanted = step["tests"]
        files, problems = junit.find(self.workspace, wanted["junit"])
        summary, combined = junit.read(files, self.workspace)
        summary["problems"] = problems + summary["problems"]
        summary.update(step=step.get("label") or f"step {index + 1}", index=index + 1)
        say(f"{junit.line(summary)} ({', '.join(summary['files']) or 'no report'})")
        for problem in summary["problems"]:
            say(f"  ! {problem}")
        for failed in summary["failures"][:20]:
            say(f"  ✗ {failed['classname'] + '.' if failed['classname'] else ''}{failed['name']}: {failed['message']}")
        path = junit.write(combined, self.run_dir / "junit" / f"tests-{index + 1}.xml")
        try:
            current_task().upload_artifact(f"tests-{index + 1}", str(path), metadata={"junit": summary})
        except (OSError, TypeError, ValueError) as exc:
            say(f"test report not stored: {exc}")
        return junit.failure_text(summary) if wanted.get("fail_on_failure") else None

    def _record(self, step: dict[str, Any], outputs: dict[str, Any], outcome: str) -> None:
        """A step's outputs under its id and under its name (DataTorch refers to steps by name)."""
        for key in (step.get("id"), step.get("name")):
            if key and (key == step.get("id") or key not in self.spec.get("step_ids", ())):
                self.context["steps"][key] = {"outputs": outputs, "outcome": outcome}

    def _render(self, value: Any, context: dict[str, Any] | None = None) -> Any:
        try:
            return expr.render(value, context or self.context)
        except expr.ExpressionError as exc:
            raise StepFailed(str(exc)) from None

    def _step(self, index: int, step: dict[str, Any]) -> dict[str, Any]:
        out_file = self.run_dir / "step-outputs" / f"{index + 1}.txt"
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text("")
        env = dict(os.environ)
        env.update({k: expr.as_text(v) for k, v in self.context["vars"].items()})
        env.update(self.context["env"])
        step_env = {k: expr.as_text(self._render(v)) for k, v in (step.get("env") or {}).items()}
        env.update(step_env)
        env.update(TRAINYARD_OUTPUT=str(out_file), GITHUB_OUTPUT=str(out_file), TRAINYARD_WORKSPACE=str(self.workspace))
        timeout = duration_s(step.get("timeout"))
        if "run" in step:
            argv, extra = self._shell(step["run"], {**self.context, "env": {**self.context["env"], **step_env}})
            env.update(extra)
            self._exec(argv, env, timeout)
            return read_outputs(out_file)
        action = self.spec["actions"][step["action"]]
        definition = action["definition"]
        try:
            given = self._render(step.get("inputs") or {})
            inputs = check_inputs(self._declared(step, action), given)
        except ValueError as exc:
            raise StepFailed(f"action {action['display']}: {exc}") from None
        cache_file = self._cache_file(action, step, inputs)
        if cache_file is not None and cache_file.is_file():
            say(f"results found in the step cache ({cache_file.name})")
            return json.loads(cache_file.read_text())
        folder = self._action_folder(action)
        for name, value in inputs.items():
            env[input_env_name(name)] = expr.as_text(value)
        argv = self._action_argv(action, definition["runs"], folder, inputs, env, out_file)
        declared = definition.get("outputs") or {}
        datatorch = action["file"].startswith("action-datatorch")
        if datatorch:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(DATATORCH_PATH), env.get("PYTHONPATH")) if p)
        # DataTorch actions print "::name::<json>" lines, declared or not (DataTorch reads them all)
        outputs = {**self._exec(argv, env, timeout, datatorch), **read_outputs(out_file)}
        for name, spec in declared.items():
            if name in outputs and spec.get("type"):
                try:
                    outputs[name] = cast_input(name, spec["type"], outputs[name])
                except ValueError as exc:
                    raise StepFailed(f"action {action['display']} output {exc}") from None
        if cache_file is not None:
            _write_atomic(cache_file, json.dumps(outputs))
        return outputs

    def _declared(self, step: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
        """The action's declared inputs, defaults rendered: DataTorch's action files may use its
        machine-local names there (``${{ directory.temp }}/download``), mapped onto this run."""
        declared = action["definition"].get("inputs") or {}
        if not any(isinstance(s.get("default"), str) and expr.TEMPLATE.search(s["default"]) for s in declared.values()):
            return declared
        temp = self.run_dir / "tmp"
        temp.mkdir(exist_ok=True)
        local = {
            "agent": {"id": os.environ.get("TRAINYARD_TASK_ID", ""), "directory": str(self.run_dir)},
            "directory": {
                "agent": str(self.run_dir),
                "actions": str(self.cache_root),
                "logs": str(self.run_dir / "logs"),
                "temp": str(temp),
            },
            "machine": {"name": platform.node(), "os": platform.system(), "version": platform.version()},
            "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
            "step": {"id": step.get("id"), "name": step.get("name")},
            "action": {
                "name": action["definition"].get("name"),
                "tag": action.get("tag"),
                "version": action.get("tag"),
            },
        }
        context = {**self.context, **local}
        out = {}
        for name, spec in declared.items():
            default = spec.get("default")
            if isinstance(default, str) and expr.TEMPLATE.search(default):
                spec = {**spec, "default": self._render(default, context)}
            out[name] = spec
        return out

    def _cache_file(self, action: dict[str, Any], step: dict[str, Any], inputs: dict[str, Any]) -> Path | None:
        """Where this action's outputs for these inputs are kept when caching is on (else None)."""
        wanted = step.get("cache")
        if wanted is None:
            wanted = bool(action["definition"].get("cache"))
        if not wanted:
            return None
        identity = [action.get("url") or action["key"], action.get("sha") or action["key"], inputs]
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
        return self.cache_root / "results" / f"{digest}.json"

    def _shell(self, text: str, context: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        command, found = expr.shell_safe(text)
        values = {name: expr.as_text(self._render("${{" + e + "}}", context)) for name, e in found.items()}
        bash = shutil.which("bash")
        argv = (
            [bash, "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", command]
            if bash
            else ["sh", "-e", "-c", command]
        )
        return argv, values

    def _action_folder(self, action: dict[str, Any]) -> Path:
        if action["kind"] == "path":
            return unpack_files(action["files"], self.run_dir / "actions" / action["key"])
        folder, _ = fetch_git(action["url"], action["tag"], self.cache_root, action.get("sha"))
        return folder

    def _action_argv(
        self, action: dict[str, Any], runs: dict[str, Any], folder: Path, inputs: dict[str, Any], env: dict, out: Path
    ) -> list[str]:
        context = {**self.context, "inputs": inputs, "action": {"path": str(folder)}}
        args = [expr.as_text(self._render(a, context)) for a in runs.get("args") or []]
        if not runs.get("args"):
            args = [json.dumps(inputs)]
        using = runs["using"]
        env["TRAINYARD_ACTION_PATH"] = str(folder)
        if using in ("cmd", "command", "commandline"):
            argv, extra = self._shell(runs["command"], context)
            env.update(extra)
            return argv
        main = runs.get("main") or runs.get("script")
        if using in ("python", "script", "shell", "node"):
            path = (folder / main).resolve()
            if folder.resolve() not in path.parents or not path.is_file():
                raise StepFailed(f"action {action['display']}: {main!r} is not a file in the action")
            if using == "python":
                return [sys.executable, "-u", str(path), *args]
            if using == "node":
                return ["node", str(path), *args]
            if not os.access(path, os.X_OK):
                return ["bash" if shutil.which("bash") else "sh", str(path), *args]
            return [str(path), *args]
        if using == "docker":
            names = sorted(k for k in env if k.startswith("INPUT_"))
            argv = ["docker", "run", "--rm", "--network", _docker_network(), "-w", "/workspace"]
            argv += [
                "-v",
                f"{self.workspace}:/workspace",
                "--label",
                f"trainyard.task={os.environ.get('TRAINYARD_TASK_ID', '')}",
            ]
            argv += ["-v", f"{out.parent}:/trainyard-outputs", "-e", f"TRAINYARD_OUTPUT=/trainyard-outputs/{out.name}"]
            argv += ["-e", f"GITHUB_OUTPUT=/trainyard-outputs/{out.name}"]
            for name in names:
                argv += ["-e", name]
            if runs.get("entrypoint"):
                argv += ["--entrypoint", runs["entrypoint"]]
            return [*argv, runs["image"], *(args if runs.get("args") else [])]
        raise StepFailed(f"action {action['display']}: unknown runs.using {using!r}")

    def _exec(self, argv: list[str], env: dict[str, str], timeout: float | None, printed: bool = False) -> dict:
        """Run one step's process; with ``printed``, also collect its ``::name::value`` lines."""
        sys.stdout.flush()
        capture = {"stdout": subprocess.PIPE} if printed else {}  # stderr stays the task's own
        try:
            proc = subprocess.Popen(argv, cwd=str(self.workspace), env=env, start_new_session=True, **capture)
        except OSError as exc:
            raise StepFailed(f"cannot start {argv[0]}: {exc}") from None
        found: dict[str, Any] = {}
        reader = None
        if printed:
            reader = threading.Thread(target=_pump, args=(proc, found), daemon=True)
            reader.start()
        try:
            code = proc.wait(timeout=timeout)
            if reader is not None:
                reader.join()
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise StepFailed(f"timed out after {timeout:g}s") from None
        except BaseException:
            _kill(proc)
            raise
        if code != 0:
            raise ProcessFailed(f"exit code {code}")
        return found

    def _report(self, outputs: dict[str, Any]) -> None:
        """Job outputs become the task's outputs (the run folder's events.jsonl)."""
        say(f"job {self.spec['job']} outputs: {json.dumps(outputs)}")
        task = current_task()
        for name, value in outputs.items():
            try:
                task.set_output(name, value)
            except (TypeError, ValueError) as exc:  # the worker would refuse the line: say why here
                say(f"output {name!r} not stored: {exc}")


_PRINTED = re.compile(r"::([A-Za-z_][A-Za-z0-9_-]*)::(.*)")


def _pump(proc: subprocess.Popen, found: dict[str, Any]) -> None:
    """Copy a process's output through, keeping its ``::name::value`` lines as outputs."""
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        match = _PRINTED.fullmatch(line)
        if match:
            found[match.group(1)] = _json_or_text(match.group(2))
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(path.parent))
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _docker_network() -> str:
    """``TRAINYARD_ACTION_NETWORK``, else the engine's bridge network when it has one, else the host's."""
    chosen = os.environ.get("TRAINYARD_ACTION_NETWORK")
    if chosen:
        return chosen
    probe = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True)
    return "bridge" if probe.returncode == 0 else "host"


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    run_dir = Path(os.environ.get(ENV_RUN_DIR) or ".").absolute()
    configuration = current_task().get_configuration()
    if JOB_KEY not in configuration:
        say(f"{TASK_FILE} has no {JOB_KEY!r} configuration: not a pipeline-file job")
        return 2
    runner = JobRunner(configuration[JOB_KEY], configuration.get(NEEDS_KEY) or {}, run_dir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
