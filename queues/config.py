"""The settings' shape (``Settings``) and the table of every ``TRAINYARD_*`` variable.

Reading them is the front door's job (``trainyard/settings.py``), which registers its reader here
with ``use_settings``; queues/, worker/ and controller/ ask ``current()`` when they need a value
(never at import time), so a changed environment (a test, a subprocess) is seen on the next call.
The in-task runtime is the one exception: it reads ``TRAINYARD_RUN_DIR`` and ``TRAINYARD_TASK_ID``
itself, being standard-library-only code that runs without trainyard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the ``Settings`` field it fills, its default, what it does."""

    name: str
    field: str
    default: str
    meaning: str
    secret: bool = False  # withheld from task processes and masked in their output


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "TRAINYARD_HOME", "home", "~/.trainyard", "state folder: embedded Redis data, run folders, caches, artifacts"
    ),
    Variable(
        "TRAINYARD_REDIS_URL",
        "redis_url",
        "(embedded)",
        "`redis://[user:password@]host:port/db`, `rediss://…` (TLS) or `unix:///path`; unset: the embedded Redis",
        True,
    ),
    Variable("TRAINYARD_REDIS_PASSWORD", "redis_password", "-", "a Redis password kept out of the URL", True),
    Variable(
        "TRAINYARD_REDIS_CA",
        "redis_ca",
        "-",
        "for `rediss://`: the CA that signed the server's certificate "
        "(URL query parameters such as `?ssl_ca_certs=` win)",
    ),
    Variable(
        "TRAINYARD_REDIS_CERT", "redis_cert", "-", "for `rediss://`: a client certificate, when the server asks for one"
    ),
    Variable("TRAINYARD_REDIS_KEY", "redis_key", "-", "rediss://: the client certificate's key"),
    Variable(
        "TRAINYARD_ARTIFACTS",
        "artifacts_url",
        "$TRAINYARD_HOME/artifacts",
        "where artifacts go: a folder or an fsspec URL",
    ),
    Variable("TRAINYARD_USER", "user", "login name", "the user recorded on new tasks"),
    Variable("TRAINYARD_HEARTBEAT_S", "heartbeat_s", "2", "how often a worker reports"),
    Variable(
        "TRAINYARD_WORKER_TTL_S",
        "worker_ttl_s",
        "10",
        "a worker's registry entry expires this long after its last report",
    ),
    Variable("TRAINYARD_DEAD_AFTER_S", "dead_after_s", "20", "a claim unrefreshed this long, its worker gone: reaped"),
    Variable(
        "TRAINYARD_REDIS_REPLICAS",
        "redis_replicas",
        "0",
        "a task change (create, enqueue, status) returns only once this many replicas have it (Redis `WAIT`, "
        "up to 5 s, then the record read back from the server that answers: taken again if a failover lost it; "
        "no wait while fewer replicas are connected, with a warning): what a failover cannot lose",
    ),
    Variable(
        "TRAINYARD_NVML",
        "nvml",
        "pynvml",
        "`pynvml`, `off`, or `standin` (fake GPUs for demos and tests, see `worker/standin_nvml.py`)",
    ),
    Variable("TRAINYARD_STANDIN_GPUS", "standin_gpus", "-", "the stand-in NVML's GPUs, as JSON"),
    Variable("TRAINYARD_STANDIN_GPUS_FILE", "standin_gpus_file", "-", "the stand-in NVML's GPUs, from a JSON file"),
    Variable("TRAINYARD_CONDA_EXE", "conda_exe", "micromamba, mamba or conda on PATH", "the conda tool"),
    Variable("TRAINYARD_GIT_USER", "git_user", "-", "on a worker: user for private repositories", True),
    Variable("TRAINYARD_GIT_TOKEN", "git_token", "-", "on a worker: token for private repositories", True),
    Variable("TRAINYARD_REGISTRY_USER", "registry_user", "-", "on a worker: user for docker pulls", True),
    Variable("TRAINYARD_REGISTRY_PASSWORD", "registry_password", "-", "on a worker: password for docker pulls", True),
    Variable(
        "TRAINYARD_ACTIONS_SOURCE",
        "actions_source",
        "https://github.com",
        "where `owner/repo@tag` actions come from: GitHub, a mirror base URL, or a local folder of repositories",
    ),
    Variable("TRAINYARD_ACTIONS_CACHE", "actions_cache", "$TRAINYARD_HOME/actions", "where fetched actions are cached"),
    Variable(
        "TRAINYARD_WEB_URL",
        "web_url",
        "-",
        "where the web app is (e.g. `http://yard:8080`): alerts link to tasks there",
    ),
    Variable(
        "TRAINYARD_CLEARML_PICKLE",
        "clearml_pickle",
        "0",
        "`1`: this process explicitly allows `trainyard.clearml` to store and load pickled artifacts",
    ),
    Variable("TRAINYARD_TASK_ID", "task_id", "-", "set by the worker: the task a process runs for"),
    Variable(
        "TRAINYARD_RUN_DIR",
        "run_dir",
        "-",
        "set by the worker: the task's run folder (with no Redis URL beside it, trainyard in the task asks its worker)",
    ),
    Variable("TRAINYARD_ATTEMPT", "attempt", "-", "set by the worker: the attempt a process runs for"),
    Variable("TRAINYARD_WORKER", "worker", "-", "set by the worker: its name (how its leftovers are found)"),
    Variable(
        "TRAINYARD_SECRET_<NAME>",
        "secrets",
        "-",
        "on a worker: the value of secret `<name>` for tasks that name it",
        True,
    ),
)
SECRET_PREFIX = "TRAINYARD_SECRET_"


@dataclass(frozen=True)
class Settings:
    """Every ``TRAINYARD_*`` setting, typed (see ``VARIABLES``)."""

    home: Path
    redis_url: str | None = None
    redis_password: str | None = None
    redis_ca: str | None = None
    redis_cert: str | None = None
    redis_key: str | None = None
    artifacts_url: str = ""
    user: str = "unknown"
    heartbeat_s: float = 2.0
    worker_ttl_s: float = 10.0
    dead_after_s: float = 20.0
    redis_replicas: int = 0
    nvml: str = "pynvml"
    standin_gpus: str | None = None
    standin_gpus_file: str | None = None
    conda_exe: str | None = None
    git_user: str | None = None
    git_token: str | None = None
    registry_user: str | None = None
    registry_password: str | None = None
    actions_source: str = "https://github.com"
    actions_cache: Path | None = None
    web_url: str = ""
    clearml_pickle: bool = False
    task_id: str | None = None
    run_dir: Path | None = None
    attempt: int | None = None
    worker: str | None = None
    secrets: dict[str, str] = field(default_factory=dict)  # TRAINYARD_SECRET_<NAME> -> value

    @property
    def embedded_dir(self) -> Path:
        return self.home / "redis"


_reader: Callable[[], Settings] | None = None


def use_settings(reader: Callable[[], Settings]) -> None:
    """Registered by the front door: how to get the current settings."""
    global _reader
    _reader = reader


def current() -> Settings:
    """The current settings (read afresh by the front door's reader)."""
    if _reader is None:
        raise RuntimeError("no settings reader registered (import trainyard first)")
    return _reader()
