"""A stand-in for ``pynvml`` on machines without NVIDIA GPUs (tests and demos only).

Nothing here touches a GPU or a driver: the "GPUs" are described in JSON. trainyard
uses this module only when the environment variable ``TRAINYARD_NVML=standin`` is set;
otherwise it talks to the real NVML through ``pynvml``.

It implements the subset of the pynvml interface trainyard uses, with the same names
and call shapes. The fake GPUs come from, in order:

* ``TRAINYARD_STANDIN_GPUS_FILE``: path to a JSON file, re-read on every call, so a
  test can change free memory or processes while a worker runs;
* ``TRAINYARD_STANDIN_GPUS``: the same JSON as a string;
* otherwise 4 GPUs named "Stand-in GPU" with 16384 MB each.

The JSON is a list of objects (all keys but ``name`` optional)::

    {"name": "Stand-in GPU", "memory_total_mb": 16384, "memory_used_mb": 0,
     "utilization": 0, "temperature": 35, "processes": [{"pid": 123, "used_memory_mb": 512}],
     "uuid": "GPU-...", "pci_bus_id": "00000000:01:00.0"}

``memory_used_mb`` defaults to the sum of the processes' memory. A malformed description
raises ``NVMLError`` naming the bad value, like a broken driver would.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..queues import config

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_TEMPERATURE_GPU = 0

FILE_ENV = "TRAINYARD_STANDIN_GPUS_FILE"
JSON_ENV = "TRAINYARD_STANDIN_GPUS"
DEFAULT_GPU_COUNT = 4
DEFAULT_NAME = "Stand-in GPU"
DEFAULT_MEMORY_MB = 16384
DEFAULT_TEMPERATURE = 35
DRIVER_VERSION = "0.0.0-standin"
MB = 1024 * 1024

_INT_KEYS = ("memory_total_mb", "memory_used_mb", "utilization", "temperature")
_KNOWN_KEYS = {"name", "processes", "uuid", "pci_bus_id", *_INT_KEYS}
_UUID_NAMESPACE = uuid.UUID("6f1c2a9e-3b1d-4c55-9a57-7472616979ff")

_lock = threading.Lock()
_init_count = 0


class NVMLError(Exception):
    """Raised like pynvml's NVMLError; ``value`` is the NVML error code."""

    def __init__(self, value: int, message: str | None = None):
        self.value = value
        super().__init__(message or f"stand-in NVML error {value}")


@dataclass(frozen=True)
class _Handle:
    """A device handle: only the index; the device is looked up again on each call."""

    index: int


@dataclass(frozen=True)
class _PciInfo:
    busId: str  # pynvml's field name


@dataclass(frozen=True)
class _Memory:
    total: int
    free: int
    used: int


@dataclass(frozen=True)
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Process:
    pid: int
    usedGpuMemory: int  # pynvml's field name


def write_config(path: str | os.PathLike[str], gpus: list[dict[str, Any]]) -> Path:
    """Write a stand-in GPU description atomically (readers never see half a file)."""
    target = Path(path)
    _validate(gpus, str(target))
    fd, tmp = tempfile.mkstemp(prefix=".standin-gpus-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(gpus, out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _default_gpus() -> list[dict[str, Any]]:
    return [{"name": DEFAULT_NAME, "memory_total_mb": DEFAULT_MEMORY_MB} for _ in range(DEFAULT_GPU_COUNT)]


def _load() -> list[dict[str, Any]]:
    """The current GPU description (file, then JSON variable, then the default)."""
    settings = config.current()
    path = settings.standin_gpus_file
    if path:
        source = f"{FILE_ENV}={path}"
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise NVMLError(NVML_ERROR_UNKNOWN, f"stand-in NVML: cannot read {source}: {exc.strerror}") from None
    elif settings.standin_gpus:
        source, text = JSON_ENV, settings.standin_gpus
    else:
        return _default_gpus()
    try:
        gpus = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NVMLError(NVML_ERROR_UNKNOWN, f"stand-in NVML: {source} is not valid JSON: {exc}") from None
    _validate(gpus, source)
    return gpus


def _bad(source: str, what: str) -> NVMLError:
    return NVMLError(NVML_ERROR_UNKNOWN, f"stand-in NVML: bad GPU description in {source}: {what}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _validate(gpus: Any, source: str) -> None:
    """Raise NVMLError naming the first bad value in a GPU description."""
    if not isinstance(gpus, list):
        raise _bad(source, f"expected a list of GPUs, got {type(gpus).__name__}")
    for i, gpu in enumerate(gpus):
        if not isinstance(gpu, dict):
            raise _bad(source, f"GPU {i} must be an object, got {gpu!r}")
        unknown = sorted(set(gpu) - _KNOWN_KEYS)
        if unknown:
            raise _bad(source, f"GPU {i} has unknown key {unknown[0]!r} (known: {', '.join(sorted(_KNOWN_KEYS))})")
        if not isinstance(gpu.get("name"), str) or not gpu["name"]:
            raise _bad(source, f"GPU {i} needs a non-empty string 'name', got {gpu.get('name')!r}")
        for key in _INT_KEYS:
            if key in gpu and not _is_count(gpu[key]):
                raise _bad(source, f"GPU {i} {key} must be an integer >= 0, got {gpu[key]!r}")
        if gpu.get("utilization", 0) > 100:
            raise _bad(source, f"GPU {i} utilization must be a percent (0-100), got {gpu['utilization']!r}")
        for key in ("uuid", "pci_bus_id"):
            if key in gpu and not isinstance(gpu[key], str):
                raise _bad(source, f"GPU {i} {key} must be a string, got {gpu[key]!r}")
        procs = gpu.get("processes", [])
        if not isinstance(procs, list):
            raise _bad(source, f"GPU {i} processes must be a list, got {procs!r}")
        for proc in procs:
            if not isinstance(proc, dict) or not _is_count(proc.get("pid")):
                raise _bad(source, f"GPU {i} process {proc!r} needs an integer 'pid'")
            if not _is_count(proc.get("used_memory_mb", 0)):
                raise _bad(source, f"GPU {i} process {proc!r} used_memory_mb must be an integer >= 0")
        if _used_mb(gpu) > gpu.get("memory_total_mb", DEFAULT_MEMORY_MB):
            raise _bad(source, f"GPU {i} uses {_used_mb(gpu)} MB of {gpu.get('memory_total_mb', DEFAULT_MEMORY_MB)} MB")


def _used_mb(gpu: dict[str, Any]) -> int:
    if "memory_used_mb" in gpu:
        return gpu["memory_used_mb"]
    return sum(p.get("used_memory_mb", 0) for p in gpu.get("processes", []))


def _check_init() -> None:
    if _init_count <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED, "Uninitialized (stand-in NVML: call nvmlInit() first)")


def _device(handle: _Handle) -> dict[str, Any]:
    _check_init()
    if not isinstance(handle, _Handle):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT, f"stand-in NVML: {handle!r} is not a device handle")
    gpus = _load()
    if handle.index >= len(gpus):
        raise NVMLError(NVML_ERROR_GPU_IS_LOST, f"stand-in NVML: GPU {handle.index} is gone ({len(gpus)} GPU(s) now)")
    return gpus[handle.index]


def nvmlInit() -> None:
    """Start the stand-in; checks the GPU description like the real one loads the driver."""
    global _init_count
    _load()
    with _lock:
        _init_count += 1


def nvmlShutdown() -> None:
    """Undo one nvmlInit()."""
    global _init_count
    with _lock:
        _check_init()
        _init_count -= 1


def nvmlSystemGetDriverVersion() -> str:
    _check_init()
    return DRIVER_VERSION


def nvmlDeviceGetCount() -> int:
    _check_init()
    return len(_load())


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    _check_init()
    count = len(_load())
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT, f"stand-in NVML: no GPU {index!r} ({count} GPU(s))")
    return _Handle(index)


def nvmlDeviceGetName(handle: _Handle) -> str:
    return _device(handle)["name"]


def nvmlDeviceGetUUID(handle: _Handle) -> str:
    gpu = _device(handle)
    return gpu.get("uuid") or f"GPU-{uuid.uuid5(_UUID_NAMESPACE, str(handle.index))}"


def nvmlDeviceGetPciInfo(handle: _Handle) -> _PciInfo:
    gpu = _device(handle)
    return _PciInfo(busId=gpu.get("pci_bus_id") or f"00000000:{handle.index + 1:02X}:00.0")


def nvmlDeviceGetMemoryInfo(handle: _Handle) -> _Memory:
    gpu = _device(handle)
    total = gpu.get("memory_total_mb", DEFAULT_MEMORY_MB) * MB
    used = _used_mb(gpu) * MB
    return _Memory(total=total, free=total - used, used=used)


def nvmlDeviceGetUtilizationRates(handle: _Handle) -> _Utilization:
    """GPU busy percent from ``utilization``; memory-controller busy percent mirrors it."""
    busy = _device(handle).get("utilization", 0)
    return _Utilization(gpu=busy, memory=busy)


def nvmlDeviceGetTemperature(handle: _Handle, sensor: int) -> int:
    gpu = _device(handle)
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT, f"stand-in NVML: unknown temperature sensor {sensor!r}")
    return gpu.get("temperature", DEFAULT_TEMPERATURE)


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[_Process]:
    gpu = _device(handle)
    return [_Process(pid=p["pid"], usedGpuMemory=p.get("used_memory_mb", 0) * MB) for p in gpu.get("processes", [])]
