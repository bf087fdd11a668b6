"""Live machine and GPU statistics for a worker's heartbeat, and per-task GPU usage summaries.

``Monitor.sample()`` returns a JSON-able snapshot (it goes into ``WorkerInfo.stats``):

* ``cpu_percent``: system CPU busy % since the previous sample, from psutil's non-blocking
  ``cpu_percent(interval=None)``; psutil keeps that counter per thread, so it is primed in each
  thread that samples (the first sample of a thread reports ``None``);
* ``load_avg`` (1, 5, 15 min), ``memory`` and ``disk`` (the filesystem of ``TRAINYARD_HOME``) as
  ``total_mb``/``used_mb``/``percent``; ``net``: bytes sent/received per second since the
  previous sample;
* ``gpus``: one entry per GPU from ``nvml.devices()`` (only the ids asked for), or ``None``
  with ``gpu_note`` saying why when NVML is unavailable.

Cost, measured on the development machine (2 CPUs, no GPU): about 0.15 ms a sample without
NVML (0.6 ms when caches are cold, as after a 2 s pause), and about 1.5 ms with 4 stand-in GPUs
(the stand-in re-reads its JSON file on every NVML call). Real NVML could not be timed there;
each snapshot carries its own cost as ``sample_ms`` (shown by ``trainyard worker show``), so it
can be read on a GPU host. At one sample per 2 s heartbeat this is under 0.1 % of one CPU.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from ..queues import config
from .gpus import GpuInfo, Nvml

MB = 1024 * 1024
MIN_CPU_INTERVAL_S = 0.1  # a shorter window is noise; a quicker repeat reuses the last value


def _home() -> Path:
    return config.current().home


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the home folder may not exist yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def _usage(total: int, used: int, percent: float) -> dict[str, Any]:
    return {"total_mb": total // MB, "used_mb": used // MB, "percent": round(float(percent), 1)}


def _gpu_entry(gpu: GpuInfo) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "name": gpu.name,
        "utilization_pct": gpu.utilization_pct,
        "memory_used_mb": gpu.memory_used_mb,
        "memory_total_mb": gpu.memory_total_mb,
        "temperature_c": gpu.temperature_c,
        "processes": len(gpu.processes),
    }


class Monitor:
    """Samples this machine; keeps what rates need between samples (CPU window, network counters)."""

    def __init__(self, nvml: Nvml, disk_path: str | os.PathLike[str] | None = None) -> None:
        self.nvml = nvml
        self.disk_path = Path(disk_path) if disk_path is not None else None
        self._lock = threading.Lock()
        self._cpu: dict[int | None, tuple[float, float | None]] = {}  # thread -> (last call, last value)
        self._net = self._net_counters()
        self._prime_cpu()

    @staticmethod
    def _net_counters() -> tuple[float, int, int] | None:
        counters = psutil.net_io_counters()
        return None if counters is None else (time.monotonic(), counters.bytes_sent, counters.bytes_recv)

    def _prime_cpu(self) -> None:
        psutil.cpu_percent(interval=None)
        self._cpu[threading.get_ident()] = (time.monotonic(), None)

    def _cpu_percent(self) -> float | None:
        """Busy % since this thread's previous call; None right after priming a new thread."""
        tid = threading.get_ident()
        last = self._cpu.get(tid)
        if last is None:
            self._prime_cpu()
            return None
        now = time.monotonic()
        if now - last[0] < MIN_CPU_INTERVAL_S:
            return last[1]
        value = float(psutil.cpu_percent(interval=None))
        self._cpu[tid] = (now, value)
        return value

    def _net_rates(self) -> dict[str, float] | None:
        current = self._net_counters()
        with self._lock:
            previous, self._net = self._net, current
        if current is None or previous is None:
            return None
        elapsed = current[0] - previous[0]
        if elapsed <= 0:
            return None
        return {
            "sent_bytes_per_s": round(max(0, current[1] - previous[1]) / elapsed, 1),
            "recv_bytes_per_s": round(max(0, current[2] - previous[2]) / elapsed, 1),
        }

    def _gpus(self, gpus: list[int] | None) -> dict[str, Any]:
        if gpus is not None and not gpus:
            return {"gpus": []}  # a CPU-only worker: NVML is not even started
        if not self.nvml.available():
            return {"gpus": None, "gpu_note": self.nvml.reason()}
        found = self.nvml.devices()
        if gpus is not None:
            found = [g for g in found if g.index in gpus]
        result: dict[str, Any] = {"gpus": [_gpu_entry(g) for g in found]}
        missing = sorted(set(gpus or ()) - {g.index for g in found})
        if missing:
            result["gpu_note"] = f"NVML does not report GPU {', '.join(map(str, missing))}"
        return result

    def sample(self, gpus: list[int] | None = None) -> dict[str, Any]:
        """A snapshot of this machine; ``gpus`` limits the GPU part to those ids (None: all)."""
        started = time.perf_counter()
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(str(_existing(self.disk_path or _home())))
        try:
            load: list[float] | None = [round(x, 2) for x in psutil.getloadavg()]
        except (AttributeError, OSError):
            load = None
        snapshot: dict[str, Any] = {
            "time": time.time(),
            "cpu_percent": self._cpu_percent(),
            "cpu_count": psutil.cpu_count(),
            "load_avg": load,
            "memory": _usage(memory.total, memory.total - memory.available, memory.percent),
            "disk": _usage(disk.total, disk.used, disk.percent),
            "net": self._net_rates(),
            **self._gpus(gpus),
        }
        snapshot["sample_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return snapshot


_default: Monitor | None = None
_default_lock = threading.Lock()


def sample(nvml: Nvml, gpus: list[int] | None = None) -> dict[str, Any]:
    """A snapshot from a process-wide ``Monitor`` (rates are since the previous call)."""
    global _default
    with _default_lock:
        if _default is None or _default.nvml is not nvml:
            _default = Monitor(nvml)
        monitor = _default
    return monitor.sample(gpus)


class GpuUsage:
    """Running summary of one task's GPUs (ids as strings) over the worker's samples.

    NVML reports utilization and memory per device, not per process: when GPUs are shared
    between tasks, each task's summary covers the whole GPU.
    """

    def __init__(self, gpus: list[str]) -> None:
        self.gpus = list(gpus)
        self._lock = threading.Lock()
        self._seen: dict[str, dict[str, Any]] = {}

    def add(self, sampled: list[dict[str, Any]] | None) -> None:
        """Fold one snapshot's ``gpus`` list in (entries of other GPUs are ignored)."""
        with self._lock:
            for gpu in sampled or ():
                key = str(gpu.get("index"))
                if key not in self.gpus:
                    continue
                seen = self._seen.setdefault(
                    key, {"name": gpu.get("name"), "samples": 0, "util_sum": 0, "util_n": 0, "util_max": None, "mem": 0}
                )
                seen["samples"] += 1
                seen["memory_total_mb"] = gpu.get("memory_total_mb")
                seen["mem"] = max(seen["mem"], gpu.get("memory_used_mb") or 0)
                util = gpu.get("utilization_pct")
                if util is not None:
                    seen["util_sum"] += util
                    seen["util_n"] += 1
                    seen["util_max"] = util if seen["util_max"] is None else max(seen["util_max"], util)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per GPU id: max and mean utilization %, max memory used (MB), and the sample count."""
        with self._lock:
            return {
                key: {
                    "name": seen["name"],
                    "utilization_max_pct": seen["util_max"],
                    "utilization_mean_pct": round(seen["util_sum"] / seen["util_n"], 1) if seen["util_n"] else None,
                    "memory_max_mb": seen["mem"],
                    "memory_total_mb": seen["memory_total_mb"],
                    "samples": seen["samples"],
                }
                for key in self.gpus
                if (seen := self._seen.get(key)) is not None
            }
