"""GPU discovery, the --gpus spec and GPU pinning.

Most tests use the stand-in NVML (``TRAINYARD_NVML=standin``, fake GPUs from JSON) instead
of a real GPU; each says so. The one real-GPU test is marked ``gpu`` and skips without one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import types

import pytest

from trainyard.queues.errors import InvalidInput
from trainyard.worker import gpus, standin_nvml
from trainyard.worker.gpus import GpuInfo, Nvml, describe, parse_gpu_spec, pinning_env, resolve_worker_gpus
from trainyard.worker.standin_nvml import write_config

TWO_GPUS = [
    {"name": "Stand-in A100", "memory_total_mb": 40960, "utilization": 7, "temperature": 41},
    {"name": "Stand-in T4", "memory_total_mb": 15360, "processes": [{"pid": 4242, "used_memory_mb": 1024}]},
]


@pytest.fixture(autouse=True)
def clean_nvml_env(monkeypatch):
    """No test inherits a backend choice or a GPU description from the environment."""
    for name in ("TRAINYARD_NVML", "TRAINYARD_STANDIN_GPUS", "TRAINYARD_STANDIN_GPUS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def nvml():
    """A fresh Nvml per test, shut down afterwards."""
    instance = Nvml()
    yield instance
    instance.reset()


@pytest.fixture
def standin(monkeypatch, tmp_path):
    """Select the stand-in NVML with TWO_GPUS in a file; returns the file's path."""
    path = write_config(tmp_path / "gpus.json", TWO_GPUS)
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS_FILE", str(path))
    return path


# --- the --gpus spec -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        ("0", [0]),
        ("0,1", [0, 1]),
        ("0-3", [0, 1, 2, 3]),
        ("0-1,3", [0, 1, 3]),
        (" 3 , 1 ", [1, 3]),
        ("1,1,0-1", [0, 1]),
        ("2-2", [2]),
        ("0 - 2", [0, 1, 2]),
    ],
)
def test_parse_gpu_spec_accepts(spec, ids):
    """Pure parsing, no GPU involved."""
    assert parse_gpu_spec(spec) == ids


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "bad GPU spec '': it is empty (use e.g. 0,1 or 0-3)"),
        ("  ", "bad GPU spec '  ': it is empty"),
        ("0,,x", "bad GPU spec '0,,x': empty item between commas"),
        (",0", "bad GPU spec ',0': empty item before the first comma"),
        ("0,", "bad GPU spec '0,': empty item after the last comma"),
        ("-1", "bad GPU spec '-1': '-1' is negative; GPU ids start at 0"),
        ("3-1", "bad GPU spec '3-1': range '3-1' goes backwards (write 1-3)"),
        ("a", "bad GPU spec 'a': 'a' is not a GPU index (use e.g. 0,1 or 0-3)"),
        ("x", "bad GPU spec 'x': 'x' is not a GPU index (use e.g. 0,1 or 0-3)"),
        ("0,1.5", "bad GPU spec '0,1.5': '1.5' is not a GPU index"),
        ("0-", "bad GPU spec '0-': '0-' is not a GPU index"),
        ("\u0661", "is not a GPU index"),  # Arabic-Indic digit one: only ASCII digits count
        ("0-99999999", "bad GPU spec '0-99999999': GPU id 99999999 is out of range (0-1023)"),
        ("0\n1", "bad GPU spec '0\\n1': '0\\n1' is not a GPU index"),
    ],
)
def test_parse_gpu_spec_refuses(spec, message):
    """Pure parsing, no GPU involved: one line that names the bad spec."""
    with pytest.raises(InvalidInput) as caught:
        parse_gpu_spec(spec)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


# --- the stand-in NVML ------------------------------------------------------------------


def test_standin_reports_gpus_from_file(standin, nvml):
    """Stand-in NVML (no real GPU): counts, names, memory in MB, processes."""
    assert nvml.available() and nvml.reason() == "" and nvml.backend == "standin"
    assert nvml.device_count() == 2
    assert nvml.driver_version() == standin_nvml.DRIVER_VERSION
    a100, t4 = nvml.devices()
    assert (a100.index, a100.name, a100.memory_total_mb, a100.memory_used_mb, a100.memory_free_mb) == (
        0,
        "Stand-in A100",
        40960,
        0,
        40960,
    )
    assert (a100.utilization_pct, a100.temperature_c, a100.processes) == (7, 41, ())
    assert (t4.index, t4.name, t4.memory_total_mb, t4.memory_used_mb, t4.memory_free_mb) == (
        1,
        "Stand-in T4",
        15360,
        1024,
        14336,
    )
    assert t4.processes == ((4242, 1024),)
    assert a100.uuid.startswith("GPU-") and a100.uuid != t4.uuid
    assert isinstance(a100, GpuInfo)


def test_standin_sees_live_changes_to_the_file(standin, nvml):
    """Stand-in NVML (no real GPU): the file is re-read, so a running worker sees new usage."""
    assert nvml.devices()[0].memory_free_mb == 40960
    busy = [dict(TWO_GPUS[0], processes=[{"pid": 7, "used_memory_mb": 30000}]), TWO_GPUS[1]]
    write_config(standin, busy)
    first = nvml.devices()[0]
    assert (first.memory_used_mb, first.memory_free_mb, first.processes) == (30000, 10960, ((7, 30000),))
    write_config(standin, TWO_GPUS[:1])
    assert nvml.device_count() == 1 and [g.name for g in nvml.devices()] == ["Stand-in A100"]


def test_standin_from_json_variable_and_default(monkeypatch, nvml):
    """Stand-in NVML (no real GPU): JSON string variable, then the 4-GPU default."""
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS", '[{"name": "Solo", "memory_used_mb": 100}]')
    (solo,) = nvml.devices()
    assert (solo.name, solo.memory_total_mb, solo.memory_used_mb) == ("Solo", 16384, 100)
    monkeypatch.delenv("TRAINYARD_STANDIN_GPUS")
    assert [(g.name, g.memory_total_mb) for g in nvml.devices()] == [("Stand-in GPU", 16384)] * 4


def test_standin_bad_description_makes_nvml_unavailable(monkeypatch, tmp_path, nvml):
    """Stand-in NVML (no real GPU): a broken description is reported, not raised, naming the bad value."""
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS", '[{"name": "G", "memory_total_mb": "lots"}]')
    assert not nvml.available()
    assert "memory_total_mb must be an integer >= 0, got 'lots'" in nvml.reason()
    assert nvml.devices() == [] and nvml.device_count() == 0


def test_write_config_refuses_bad_description(tmp_path):
    """Stand-in NVML (no real GPU): write_config checks before writing."""
    with pytest.raises(standin_nvml.NVMLError, match="unknown key 'memory_mb'"):
        write_config(tmp_path / "gpus.json", [{"name": "G", "memory_mb": 5}])
    assert not (tmp_path / "gpus.json").exists()


def test_standin_module_follows_pynvml_shapes(monkeypatch):
    """Stand-in NVML (no real GPU): uninitialised calls and bad indexes raise NVMLError, sizes are bytes."""
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS", '[{"name": "G", "memory_total_mb": 2, "utilization": 50}]')
    monkeypatch.setattr(standin_nvml, "_init_count", 0)  # whatever other tests left started
    with pytest.raises(standin_nvml.NVMLError) as uninit:
        standin_nvml.nvmlDeviceGetCount()
    assert uninit.value.value == standin_nvml.NVML_ERROR_UNINITIALIZED
    standin_nvml.nvmlInit()
    try:
        with pytest.raises(standin_nvml.NVMLError):
            standin_nvml.nvmlDeviceGetHandleByIndex(1)
        handle = standin_nvml.nvmlDeviceGetHandleByIndex(0)
        memory = standin_nvml.nvmlDeviceGetMemoryInfo(handle)
        assert (memory.total, memory.free, memory.used) == (2 * 1024 * 1024, 2 * 1024 * 1024, 0)
        assert standin_nvml.nvmlDeviceGetUtilizationRates(handle).gpu == 50
        assert standin_nvml.nvmlDeviceGetPciInfo(handle).busId == "00000000:01:00.0"
        assert standin_nvml.nvmlDeviceGetTemperature(handle, standin_nvml.NVML_TEMPERATURE_GPU) == 35
    finally:
        standin_nvml.nvmlShutdown()


# --- the real pynvml, and switching it off ------------------------------------------------


def test_real_pynvml_without_gpu_is_unavailable_not_an_error(nvml):
    """Real pynvml: on a machine without an NVIDIA driver it reports unavailable instead of raising."""
    if nvml.available():
        pytest.skip("this machine has a working NVML; the no-driver case cannot be seen here")
    assert nvml.backend == "pynvml"
    assert "NVML" in nvml.reason() or "NVIDIA" in nvml.reason()
    assert nvml.devices() == [] and nvml.device_count() == 0 and nvml.driver_version() is None
    assert describe(nvml) == f"no GPUs ({nvml.reason()})"


@pytest.mark.gpu
def test_real_gpus_are_listed(nvml):
    """Real pynvml and a real GPU (skipped without one)."""
    if not nvml.available():
        pytest.skip(f"no NVML here: {nvml.reason()}")
    found = nvml.devices()
    assert len(found) == nvml.device_count()
    assert all(g.name and g.uuid and g.memory_total_mb > 0 for g in found)
    if found:
        assert resolve_worker_gpus("0", False, nvml) == [0]


def test_off_forces_unavailable(monkeypatch, nvml):
    """No GPU involved: TRAINYARD_NVML=off skips NVML entirely."""
    monkeypatch.setenv("TRAINYARD_NVML", "off")
    assert not nvml.available() and nvml.backend == "off"
    assert nvml.reason() == "NVML disabled (TRAINYARD_NVML=off)"
    assert nvml.devices() == []


def test_unknown_backend_is_invalid_input(monkeypatch, nvml):
    """No GPU involved: a typo in TRAINYARD_NVML is refused, not silently taken as 'no GPUs'."""
    monkeypatch.setenv("TRAINYARD_NVML", "stand-in")
    with pytest.raises(InvalidInput, match="bad TRAINYARD_NVML='stand-in': use one of pynvml, standin, off"):
        nvml.available()


def _fake_pynvml(init_error: int | None = None) -> types.ModuleType:
    """A pynvml look-alike over the stand-in that returns bytes and lacks utilization/temperature."""
    fake = types.ModuleType("fake_pynvml")
    for name in dir(standin_nvml):
        if name.startswith(("nvml", "NVML")):
            setattr(fake, name, getattr(standin_nvml, name))

    def init():
        if init_error is not None:
            raise standin_nvml.NVMLError(init_error)
        standin_nvml.nvmlInit()

    def not_supported(*_args):
        raise standin_nvml.NVMLError(3, "Not Supported")

    fake.nvmlInit = init
    fake.nvmlDeviceGetName = lambda h: standin_nvml.nvmlDeviceGetName(h).encode()
    fake.nvmlDeviceGetUUID = lambda h: standin_nvml.nvmlDeviceGetUUID(h).encode()
    fake.nvmlSystemGetDriverVersion = lambda: b"550.54.15"
    fake.nvmlDeviceGetUtilizationRates = not_supported
    fake.nvmlDeviceGetTemperature = not_supported
    return fake


def test_bytes_and_unsupported_queries(standin, monkeypatch, nvml):
    """Stand-in NVML behind a fake pynvml (no real GPU): bytes become str, unsupported values become None."""
    monkeypatch.setenv("TRAINYARD_NVML", "pynvml")
    monkeypatch.setattr(gpus, "_import_pynvml", _fake_pynvml)
    first = nvml.devices()[0]
    assert (first.name, first.utilization_pct, first.temperature_c) == ("Stand-in A100", None, None)
    assert isinstance(first.uuid, str) and first.uuid.startswith("GPU-")
    assert nvml.driver_version() == "550.54.15"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(9, "NVIDIA driver not loaded"), (12, "NVML not found (no NVIDIA driver)"), (999, "NVML failed to start:")],
)
def test_init_failures_give_plain_reasons(monkeypatch, nvml, code, reason):
    """Fake pynvml whose init fails (no real GPU): the reason is in plain words."""
    monkeypatch.setattr(gpus, "_import_pynvml", lambda: _fake_pynvml(init_error=code))
    assert not nvml.available()
    assert nvml.reason().startswith(reason)


def test_missing_bindings_are_unavailable(monkeypatch, nvml):
    """No GPU involved: without nvidia-ml-py installed NVML is simply unavailable."""

    def no_module():
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(gpus, "_import_pynvml", no_module)
    assert not nvml.available()
    assert "nvidia-ml-py" in nvml.reason()


def test_initialises_once_across_threads(standin, monkeypatch, nvml):
    """Stand-in NVML (no real GPU): 16 threads racing to the first call start NVML once."""
    calls = []
    real_init = standin_nvml.nvmlInit

    def counting_init():
        calls.append(1)
        real_init()

    monkeypatch.setattr(standin_nvml, "nvmlInit", counting_init)
    start = threading.Barrier(16)
    results = []

    def probe():
        start.wait()
        results.append(nvml.device_count())

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [2] * 16 and len(calls) == 1


def test_reset_and_new_process_initialise_again(standin, monkeypatch, nvml):
    """Stand-in NVML (no real GPU): reset() re-reads the backend choice; a forked child re-initialises."""
    assert nvml.available()
    monkeypatch.setenv("TRAINYARD_NVML", "off")
    assert nvml.available()  # the choice is made once per process...
    nvml.reset()
    assert not nvml.available()  # ...and again after reset()
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setattr(gpus.os, "getpid", lambda: -1)  # as if in a forked child
    assert nvml.available()


def test_module_default_instance_resets(standin):
    """Stand-in NVML (no real GPU): the process-wide instance can be reset between tests."""
    gpus.default_nvml.reset()
    try:
        assert gpus.default_nvml.device_count() == 2
    finally:
        gpus.default_nvml.reset()


def test_never_imports_torch_or_cuda(standin):
    """Stand-in NVML (no real GPU): importing and querying never loads torch or a CUDA binding."""
    code = (
        "import sys; from trainyard.worker import gpus; n = gpus.Nvml(); n.devices(); gpus.describe(n); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'cupy', 'pycuda', 'numba', 'cuda')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


# --- choosing a worker's GPUs -----------------------------------------------------------


def test_resolve_cpu_only_and_no_spec(nvml):
    """No GPU involved: --cpu-only or no --gpus means no GPUs, without asking NVML."""
    assert resolve_worker_gpus(None, True, nvml) == []
    assert resolve_worker_gpus(None, False, nvml) == []
    with pytest.raises(InvalidInput, match="--cpu-only and --gpus exclude each other"):
        resolve_worker_gpus("0", True, nvml)


def test_resolve_checks_ids_against_nvml(standin, nvml):
    """Stand-in NVML with 2 GPUs instead of real ones."""
    assert resolve_worker_gpus("1,0", False, nvml) == [0, 1]
    with pytest.raises(InvalidInput) as caught:
        resolve_worker_gpus("0,5", False, nvml)
    assert str(caught.value) == "GPU 5 does not exist: NVML reports 2 GPU(s) (ids 0-1)"
    with pytest.raises(InvalidInput, match="bad GPU spec '0,,1'"):
        resolve_worker_gpus("0,,1", False, nvml)


def test_resolve_with_zero_gpus(monkeypatch, nvml):
    """Stand-in NVML reporting no GPUs (no real GPU)."""
    monkeypatch.setenv("TRAINYARD_NVML", "standin")
    monkeypatch.setenv("TRAINYARD_STANDIN_GPUS", "[]")
    with pytest.raises(InvalidInput) as caught:
        resolve_worker_gpus("0", False, nvml)
    assert str(caught.value) == "GPU 0 does not exist: NVML reports 0 GPU(s)"
    assert describe(nvml) == "no GPUs (NVML reports 0) [stand-in NVML]"


def test_resolve_without_nvml_explains(monkeypatch, nvml):
    """No GPU involved (NVML switched off): the message names the spec, the reason and --cpu-only."""
    monkeypatch.setenv("TRAINYARD_NVML", "off")
    with pytest.raises(InvalidInput) as caught:
        resolve_worker_gpus("0-1", False, nvml)
    assert str(caught.value) == (
        "cannot use --gpus '0-1': NVML disabled (TRAINYARD_NVML=off); run with --cpu-only to use no GPU"
    )


# --- pinning and the banner -------------------------------------------------------------


def test_pinning_env():
    """No GPU involved: the variables a task process gets."""
    assert pinning_env([0, 1]) == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NVIDIA_VISIBLE_DEVICES": "0,1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    assert pinning_env([]) == {
        "CUDA_VISIBLE_DEVICES": "",
        "NVIDIA_VISIBLE_DEVICES": "void",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    with pytest.raises(InvalidInput, match="cannot pin to GPU -1"):
        pinning_env([-1])


def test_describe(standin, monkeypatch, nvml):
    """Stand-in NVML (no real GPU): one banner line."""
    assert describe(nvml) == "2 GPUs: 0 Stand-in A100 (40960 MB), 1 Stand-in T4 (15360 MB) [stand-in NVML]"
    write_config(standin, TWO_GPUS[1:])
    assert describe(nvml) == "1 GPU: 0 Stand-in T4 (15360 MB) [stand-in NVML]"
