"""Hosts on a private virtual network, for the multi-host tests (tests/test_multihost.py).

Each host is a Linux network namespace with its own "cable" to this machine: a veth pair whose
root end (named like the namespace: ``ty<run><net>-<n>``, ``<run>`` from the test run's token, so
tests/leftovers.py finds what a run left) has 10.77.X.(4n+1)/30 and whose end inside the host (``eth0``) has
10.77.X.(4n+2)/30; a redis-server bound to the root ends is one server reachable from every host.
Pulling a cable (its root end set down) is a real partition: packets are dropped, calls hang until
they time out. Killing a host SIGKILLs every process in its namespace, as a machine that died.
Needs root and iproute2 (``ip``); ``unavailable()`` says why not. ``close()`` removes every
namespace and veth it made (a namespace's removal takes its veth pair with it).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass

from leftovers import TOKEN_ENV, netns_prefix

_NETWORKS = itertools.count()  # this process's networks: part of their names


@dataclass(frozen=True)
class Host:
    hostname: str  # what its workers' socket.gethostname() says
    netns: str
    cable: str  # the veth end in the root namespace
    gateway: str  # the root end's address: where Redis listens for this host
    address: str  # the host's own address


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can): tried for real, then undone."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "nsenter", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (iproute2, util-linux)"
    probe = Network(["probe"])
    try:
        probe.open()
    except RuntimeError as exc:
        return f"cannot make a network namespace with a veth pair: {exc}"
    finally:
        probe.close()
    return None


def namespaces() -> list[str]:
    """Every named network namespace on this machine."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _free_subnet() -> int:
    """X of a 10.77.X.0/24 that no interface here uses (another test run's network, say)."""
    used = set(re.findall(r"\b10\.77\.(\d+)\.", _ip("-o", "-4", "addr", "show", check=False).stdout))
    free = [x for x in range(256) if str(x) not in used]
    if not free:
        raise RuntimeError("no free 10.77.X.0/24 subnet")
    return random.choice(free)


class Network:
    """Hosts named ``hostnames`` (their host names get this network's id appended: unique)."""

    def __init__(self, hostnames: list[str]):
        token = os.environ.get(TOKEN_ENV) or secrets.token_hex(3)
        self.id = f"{token[:6]}{next(_NETWORKS) % 256:02x}"  # appended to host names: unique
        self.prefix = f"{netns_prefix(token)}{self.id[-2:]}-"  # ty<run><net>-: 15 characters at most
        self.names = list(hostnames)
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []  # namespaces and root-end veths, to remove in close()

    def open(self) -> Network:
        """Make every host's namespace and cable; on any failure undo what was made and raise."""
        try:
            subnet = _free_subnet()
            for n, name in enumerate(self.names):
                netns = cable = f"{self.prefix}{n}"
                gateway, address = f"10.77.{subnet}.{4 * n + 1}", f"10.77.{subnet}.{4 * n + 2}"
                _ip("netns", "add", netns)
                self._made.append(f"netns:{netns}")
                _ip("link", "add", cable, "type", "veth", "peer", "name", "eth0", "netns", netns)
                self._made.append(f"link:{cable}")
                _ip("addr", "add", f"{gateway}/30", "dev", cable)
                _ip("link", "set", cable, "up")
                _ip("-n", netns, "addr", "add", f"{address}/30", "dev", "eth0")
                _ip("-n", netns, "link", "set", "eth0", "up")
                _ip("-n", netns, "link", "set", "lo", "up")
                self.hosts[name] = Host(f"{name}-{self.id}", netns, cable, gateway, address)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            self.close()
            raise RuntimeError(str(exc)) from exc
        return self

    def gateways(self) -> tuple[str, ...]:
        return tuple(host.gateway for host in self.hosts.values())

    def cut(self, name: str) -> None:
        """Pull the host's cable: nothing reaches it or leaves it from now on."""
        _ip("link", "set", self.hosts[name].cable, "down")

    def restore(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].cable, "up")

    def pids(self, name: str) -> list[int]:
        """Processes inside the host (its workers, their guards, their tasks)."""
        out = _ip("netns", "pids", self.hosts[name].netns, check=False).stdout
        return [int(pid) for pid in out.split() if pid.isdigit()]

    def kill_host(self, name: str) -> int:
        """The host dies: SIGKILL every process in it, again until none is left (one may fork
        meanwhile). Returns how many were killed."""
        killed = 0
        for _ in range(50):
            pids = [pid for pid in self.pids(name) if _alive(pid)]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    continue
        return killed

    def close(self) -> None:
        """Remove everything this network made (processes still inside are killed first)."""
        for name, host in self.hosts.items():
            if f"netns:{host.netns}" in self._made:
                self.kill_host(name)
        for item in reversed(self._made):
            kind, _, value = item.partition(":")
            if kind == "link":
                _ip("link", "del", value, check=False)  # gone already when its namespace went
            else:
                _ip("netns", "del", value, check=False)
        self._made.clear()

    def leftovers(self) -> list[str]:
        """Namespaces or veths of this network that still exist (empty after ``close``)."""
        links = _ip("-o", "link", "show", check=False).stdout
        found = sorted(set(re.findall(rf"\b({re.escape(self.prefix)}\d+)@", links)))
        return [n for n in namespaces() if n.startswith(self.prefix)] + found


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a killed child of ours that nobody waited for yet)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
