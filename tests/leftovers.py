"""The suite's session-end check: a test run leaves nothing behind.

Every process started during the run inherits ``TRAINYARD_TEST_SESSION`` (set before the first test),
so a process still alive at the end that carries this run's token — a redis-server, a worker, a task
process, anything else — was left by a test. Containers are this run's when they mount a folder of
its temporary directory or carry its token. The real ``~/.trainyard`` (the account's home, whatever
``HOME`` says) is listed at the start and at the end: any file added or changed there is a leak.
Network namespaces and veths of the multi-host tests (tests/netns.py) carry the token in their
names. Leftover processes, containers and namespaces are reported, then ended (by pid / container
id / name), so one bad test does not poison the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

TOKEN_ENV = "TRAINYARD_TEST_SESSION"
WAIT_S = 15.0  # processes still shutting down (a worker ending its last task) get this long to exit
MAX_FILES = 20_000  # the listing of the real ~/.trainyard is bounded
OWN_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def netns_prefix(token: str) -> str:
    """How the names of a run's network namespaces and veths begin (tests/netns.py)."""
    return f"ty{token[:6]}"


def real_trainyard_home() -> Path:
    """``~/.trainyard`` of the account running the tests (tests change ``HOME`` and ``TRAINYARD_HOME``)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".trainyard"


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (mtime_ns, size) of everything under ``root`` (bounded)."""
    found: dict[str, tuple[int, int]] = {}
    if not root.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            with contextlib.suppress(OSError):
                stat = path.lstat()
                found[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
            if len(found) >= MAX_FILES:
                return found
    return found


@dataclass
class LeftoverCheck:
    """Start it before the first test (``begin``), ask it after the last (``finish``)."""

    basetemp: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    home_before: dict[str, tuple[int, int]] = field(default_factory=dict)

    def begin(self) -> None:
        os.environ[TOKEN_ENV] = self.token
        self.home_before = listing(real_trainyard_home())

    # -- processes ---------------------------------------------------------------------------
    def _ours(self, proc: psutil.Process) -> bool:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            env = proc.environ()
            if env.get(TOKEN_ENV) == self.token:
                return True
            if not self.basetemp:
                return False
            return any(self.basetemp in part for part in proc.cmdline()) or proc.cwd().startswith(self.basetemp)
        except (psutil.Error, OSError):
            return False

    def processes(self) -> list[psutil.Process]:
        me = os.getpid()
        mine = {me, *(p.pid for p in psutil.Process(me).parents())}
        for child in psutil.Process(me).children():  # the test process's own helpers end with it
            with contextlib.suppress(psutil.Error):
                if any(helper in " ".join(child.cmdline()) for helper in OWN_HELPERS):
                    mine.add(child.pid)
        uid = os.getuid()
        found = []
        for proc in psutil.process_iter(["pid", "uids"]):
            try:
                if proc.pid in mine or proc.info["uids"].real != uid:
                    continue
            except (psutil.Error, AttributeError):
                continue
            if self._ours(proc):
                found.append(proc)
        return found

    # -- containers --------------------------------------------------------------------------
    def containers(self) -> list[tuple[str, str]]:
        """(id, name) of this run's containers, running or not; empty without a Docker engine."""
        try:
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, timeout=60
            ).stdout.split()
            if not ids:
                return []
            raw = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, timeout=60).stdout
            items = json.loads(raw or "[]")
        except (OSError, subprocess.SubprocessError, ValueError):
            return []
        found = []
        for item in items:
            mounts = [m.get("Source", "") for m in item.get("Mounts") or []]
            env = (item.get("Config") or {}).get("Env") or []
            if (
                self.basetemp and any(m.startswith(self.basetemp) for m in mounts)
            ) or f"{TOKEN_ENV}={self.token}" in env:
                found.append((item["Id"], item.get("Name", "").lstrip("/")))
        return found

    # -- network namespaces ------------------------------------------------------------------
    def networks(self) -> list[tuple[str, str]]:
        """("netns" | "link", name) of this run's network namespaces and root-side veths."""
        if shutil.which("ip") is None:
            return []
        prefix = netns_prefix(self.token)

        def ip(*args: str) -> str:
            try:
                return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                return ""

        found = [("netns", line.split()[0]) for line in ip("netns", "list").splitlines() if line.startswith(prefix)]
        links = re.findall(rf"^\d+: ({re.escape(prefix)}[^:@\s]*)", ip("-o", "link", "show"), re.M)
        return found + [("link", name) for name in sorted(set(links))]

    # -- the verdict -------------------------------------------------------------------------
    def finish(self) -> list[str]:
        """Lines naming every leftover (empty: clean); ends the leftover processes and containers."""
        problems: list[str] = []
        procs = self.processes()
        if procs:
            _, alive = psutil.wait_procs(procs, timeout=WAIT_S)
            alive = [p for p in alive if self._ours(p)]
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    problems.append(f"process {proc.pid} still running: {_command(proc)}")
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        for cid, name in self.containers():
            problems.append(f"container {name or cid[:12]} left behind")
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=120)
        for kind, name in self.networks():
            problems.append(f"network namespace {name} left behind" if kind == "netns" else f"veth {name} left behind")
            subprocess.run(["ip", kind, "del", name], capture_output=True, timeout=30)
        after = listing(real_trainyard_home())
        changed = sorted(p for p, stat in after.items() if self.home_before.get(p) != stat)
        if changed:
            shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
            problems.append(f"written under the real {real_trainyard_home()}: {shown}")
        return problems


def _command(proc: psutil.Process) -> str:
    text = " ".join(proc.cmdline()) or proc.name()
    return text if len(text) <= 200 else text[:200] + "..."
