"""GPU discovery through NVML, the ``--gpus`` spec, and pinning a task to its GPUs.

NVML is reached through ``pynvml`` (never torch or CUDA, so nothing here grabs a GPU).
A machine without GPUs or without the NVIDIA driver is a normal case: ``Nvml`` then
reports itself unavailable with a reason instead of raising.

``TRAINYARD_NVML`` picks the backend: unset or ``pynvml`` for the real NVML,
``standin`` for ``standin_nvml`` (fake GPUs for tests and demos), ``off`` for none.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..queues import config
from ..queues.errors import InvalidInput

log = logging.getLogger(__name__)

BACKEND_ENV = "TRAINYARD_NVML"
BACKENDS = ("pynvml", "standin", "off")
MAX_GPU_ID = 1023
MB = 1024 * 1024

_SPEC_HINT = "use e.g. 0,1 or 0-3"
_INDEX = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)\s*-\s*([0-9]+)")
_NEGATIVE = re.compile(r"-\s*[0-9]+")

# NVML error codes worth a plain-words reason (values from nvml.h).
_INIT_REASONS = {
    4: "no permission to use the NVIDIA driver",
    9: "NVIDIA driver not loaded",
    12: "NVML not found (no NVIDIA driver)",
    18: "NVML and the NVIDIA kernel driver have different versions (reboot or reinstall the driver)",
}


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML sees it; memory in MB (MiB), processes as (pid, used MB)."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int
    memory_used_mb: int
    memory_free_mb: int
    utilization_pct: int | None
    temperature_c: int | None
    processes: tuple[tuple[int, int], ...] = ()


def parse_gpu_spec(spec: str) -> list[int]:
    """Parse "0", "0,1", "0-3", "0-1,3" into sorted unique GPU ids."""
    if not isinstance(spec, str):
        raise InvalidInput(f"bad GPU spec {spec!r}: expected text like 0,1 or 0-3")
    if not spec.strip():
        raise InvalidInput(f"bad GPU spec {spec!r}: it is empty ({_SPEC_HINT})")
    items = spec.split(",")
    ids: set[int] = set()
    for pos, raw in enumerate(items):
        item = raw.strip()
        if not item:
            where = "before the first" if pos == 0 else "after the last" if pos == len(items) - 1 else "between"
            raise InvalidInput(f"bad GPU spec {spec!r}: empty item {where} comma{'s' if where == 'between' else ''}")
        ids.update(_parse_item(spec, item))
    return sorted(ids)


def _parse_item(spec: str, item: str) -> range:
    """One comma-separated item: an index or an inclusive range."""
    if _INDEX.fullmatch(item):
        first = last = int(item)
    elif match := _RANGE.fullmatch(item):
        first, last = int(match[1]), int(match[2])
        if first > last:
            raise InvalidInput(f"bad GPU spec {spec!r}: range {item!r} goes backwards (write {last}-{first})")
    elif _NEGATIVE.fullmatch(item):
        raise InvalidInput(f"bad GPU spec {spec!r}: {item!r} is negative; GPU ids start at 0")
    else:
        raise InvalidInput(f"bad GPU spec {spec!r}: {item!r} is not a GPU index ({_SPEC_HINT})")
    if last > MAX_GPU_ID:
        raise InvalidInput(f"bad GPU spec {spec!r}: GPU id {last} is out of range (0-{MAX_GPU_ID})")
    return range(first, last + 1)


def _text(value: bytes | str) -> str:
    """pynvml returns bytes or str depending on its version."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class _State:
    """The outcome of one initialisation attempt."""

    pid: int
    backend: str
    lib: ModuleType | None
    reason: str


class Nvml:
    """Lazy, thread-safe access to NVML; initialised once per process on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: _State | None = None

    def _ensure(self) -> _State:
        state = self._state
        if state is not None and state.pid == os.getpid():
            return state
        with self._lock:
            if self._state is None or self._state.pid != os.getpid():
                self._state = _init_backend()
            return self._state

    @property
    def backend(self) -> str:
        """Which backend was chosen: "pynvml", "standin" or "off"."""
        return self._ensure().backend

    def available(self) -> bool:
        """True when NVML initialised (it may still report 0 GPUs)."""
        return self._ensure().lib is not None

    def reason(self) -> str:
        """Why NVML is unavailable ("" when it is available)."""
        return self._ensure().reason

    def device_count(self) -> int:
        """Number of GPUs NVML reports; 0 when unavailable."""
        lib = self._ensure().lib
        if lib is None:
            return 0
        try:
            return int(lib.nvmlDeviceGetCount())
        except lib.NVMLError as exc:
            log.warning("NVML could not count GPUs: %s", exc)
            return 0

    def driver_version(self) -> str | None:
        """The NVIDIA driver version, or None when unavailable."""
        lib = self._ensure().lib
        if lib is None:
            return None
        try:
            return _text(lib.nvmlSystemGetDriverVersion())
        except lib.NVMLError:
            return None

    def devices(self) -> list[GpuInfo]:
        """A snapshot of every GPU; empty when unavailable. GPUs that fail to answer are left out."""
        lib = self._ensure().lib
        if lib is None:
            return []
        found = []
        for index in range(self.device_count()):
            try:
                found.append(_read_device(lib, index))
            except lib.NVMLError as exc:
                log.warning("NVML could not read GPU %d: %s", index, exc)
        return found

    def reset(self) -> None:
        """Shut NVML down (if this process started it); the next call initialises again."""
        with self._lock:
            state, self._state = self._state, None
        if state is not None and state.lib is not None and state.pid == os.getpid():
            try:
                state.lib.nvmlShutdown()
            except state.lib.NVMLError as exc:
                log.debug("NVML shutdown failed: %s", exc)


def _init_backend() -> _State:
    """Import and initialise the backend chosen by TRAINYARD_NVML."""
    pid = os.getpid()
    choice = config.current().nvml
    if choice not in BACKENDS:
        raise InvalidInput(f"bad {BACKEND_ENV}={choice!r}: use one of {', '.join(BACKENDS)}")
    if choice == "off":
        return _State(pid, choice, None, f"NVML disabled ({BACKEND_ENV}=off)")
    try:
        lib = importlib.import_module(".standin_nvml", __package__) if choice == "standin" else _import_pynvml()
    except ImportError:
        return _State(pid, choice, None, "NVML bindings not installed (pip install nvidia-ml-py)")
    try:
        lib.nvmlInit()
    except lib.NVMLError as exc:
        return _State(pid, choice, None, _init_reason(exc))
    except OSError as exc:
        return _State(pid, choice, None, f"NVML could not be loaded: {exc}")
    return _State(pid, choice, lib, "")


def _import_pynvml() -> ModuleType:
    return importlib.import_module("pynvml")


def _init_reason(exc: Exception) -> str:
    """Plain words for the usual init failures, NVML's own text for the rest."""
    return _INIT_REASONS.get(getattr(exc, "value", None)) or f"NVML failed to start: {exc}"


def _read_device(lib: Any, index: int) -> GpuInfo:
    """Query one GPU; utilization, temperature and processes are optional (not every GPU reports them)."""
    handle = lib.nvmlDeviceGetHandleByIndex(index)
    memory = lib.nvmlDeviceGetMemoryInfo(handle)
    return GpuInfo(
        index=index,
        uuid=_text(lib.nvmlDeviceGetUUID(handle)),
        name=_text(lib.nvmlDeviceGetName(handle)),
        memory_total_mb=int(memory.total) // MB,
        memory_used_mb=int(memory.used) // MB,
        memory_free_mb=int(memory.free) // MB,
        utilization_pct=_optional(lib, lambda: int(lib.nvmlDeviceGetUtilizationRates(handle).gpu)),
        temperature_c=_optional(lib, lambda: int(lib.nvmlDeviceGetTemperature(handle, lib.NVML_TEMPERATURE_GPU))),
        processes=_optional(lib, lambda: _processes(lib, handle)) or (),
    )


def _processes(lib: Any, handle: Any) -> tuple[tuple[int, int], ...]:
    """(pid, used MB) per compute process; used MB is 0 when NVML withholds it (no permission)."""
    procs = lib.nvmlDeviceGetComputeRunningProcesses(handle)
    return tuple((int(p.pid), int(p.usedGpuMemory or 0) // MB) for p in procs)


def _optional(lib: Any, query: Any) -> Any:
    try:
        return query()
    except lib.NVMLError:
        return None


default_nvml = Nvml()
"""The process-wide instance; tests call ``default_nvml.reset()`` or build their own ``Nvml()``."""


def resolve_worker_gpus(spec: str | None, cpu_only: bool, nvml: Nvml) -> list[int]:
    """The GPU ids a worker may use, checked against what NVML reports."""
    if cpu_only and spec is not None:
        raise InvalidInput(f"--cpu-only and --gpus exclude each other (got --gpus {spec!r})")
    if cpu_only or spec is None:
        return []
    ids = parse_gpu_spec(spec)
    if not nvml.available():
        raise InvalidInput(f"cannot use --gpus {spec!r}: {nvml.reason()}; run with --cpu-only to use no GPU")
    count = nvml.device_count()
    missing = [i for i in ids if i >= count]
    if missing:
        known = f" (ids 0-{count - 1})" if count else ""
        raise InvalidInput(f"GPU {missing[0]} does not exist: NVML reports {count} GPU(s){known}")
    return ids


def pinning_env(gpus: list[int]) -> dict[str, str]:
    """Environment that limits a task to ``gpus`` (by PCI order); empty hides every GPU."""
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    bad = [i for i in gpus if not isinstance(i, int) or isinstance(i, bool) or i < 0]
    if bad:
        raise InvalidInput(f"cannot pin to GPU {bad[0]!r}: GPU ids are integers from 0")
    if not gpus:
        return {**env, "CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    ids = ",".join(str(i) for i in gpus)
    return {**env, "CUDA_VISIBLE_DEVICES": ids, "NVIDIA_VISIBLE_DEVICES": ids}


def describe(nvml: Nvml) -> str:
    """One line for a worker banner, e.g. "2 GPUs: 0 A100 (40960 MB), 1 A100 (40960 MB)"."""
    if not nvml.available():
        return f"no GPUs ({nvml.reason()})"
    found = nvml.devices()
    suffix = " [stand-in NVML]" if nvml.backend == "standin" else ""
    if not found:
        return f"no GPUs (NVML reports 0){suffix}"
    listed = ", ".join(f"{g.index} {g.name} ({g.memory_total_mb} MB)" for g in found)
    return f"{len(found)} GPU{'s' if len(found) != 1 else ''}: {listed}{suffix}"
