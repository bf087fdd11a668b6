"""Reading the settings: every ``TRAINYARD_*`` variable is read here and nowhere else.

The table of variables and the ``Settings`` shape live in ``queues/config.py`` (so every layer can
name them); this module reads the environment into one ``Settings`` and is registered as the reader
at import of ``trainyard`` (the front door), so the layers below get their values from it.
docs/design.md lists the variables (kept equal to the table by a test).
"""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Mapping
from pathlib import Path

from .queues.config import SECRET_PREFIX, VARIABLES, Settings

__all__ = ["Settings", "VARIABLES", "settings"]


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings in ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ

    def text(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    def seconds(name: str, default: float) -> float:
        value = text(name)
        return float(value) if value else default

    home = Path(text("TRAINYARD_HOME") or Path.home() / ".trainyard").expanduser()
    run_dir = text("TRAINYARD_RUN_DIR")
    return Settings(
        home=home,
        redis_url=env.get("TRAINYARD_REDIS_URL") or None,
        redis_password=env.get("TRAINYARD_REDIS_PASSWORD") or None,
        redis_ca=text("TRAINYARD_REDIS_CA"),
        redis_cert=text("TRAINYARD_REDIS_CERT"),
        redis_key=text("TRAINYARD_REDIS_KEY"),
        artifacts_url=env.get("TRAINYARD_ARTIFACTS") or str(home / "artifacts"),
        user=env.get("TRAINYARD_USER") or _login_name(),
        heartbeat_s=seconds("TRAINYARD_HEARTBEAT_S", 2.0),
        worker_ttl_s=seconds("TRAINYARD_WORKER_TTL_S", 10.0),
        dead_after_s=seconds("TRAINYARD_DEAD_AFTER_S", 20.0),
        redis_replicas=int(replicas) if (replicas := text("TRAINYARD_REDIS_REPLICAS") or "").isdigit() else 0,
        nvml=env.get("TRAINYARD_NVML", "").strip().lower() or "pynvml",
        standin_gpus=env.get("TRAINYARD_STANDIN_GPUS") or None,
        standin_gpus_file=env.get("TRAINYARD_STANDIN_GPUS_FILE") or None,
        conda_exe=text("TRAINYARD_CONDA_EXE"),
        git_user=env.get("TRAINYARD_GIT_USER") or None,
        git_token=env.get("TRAINYARD_GIT_TOKEN") or None,
        registry_user=env.get("TRAINYARD_REGISTRY_USER") or None,
        registry_password=env.get("TRAINYARD_REGISTRY_PASSWORD") or None,
        actions_source=env.get("TRAINYARD_ACTIONS_SOURCE") or "https://github.com",
        actions_cache=Path(env.get("TRAINYARD_ACTIONS_CACHE") or home / "actions"),
        web_url=env.get("TRAINYARD_WEB_URL", "").rstrip("/"),
        clearml_pickle=env.get("TRAINYARD_CLEARML_PICKLE", "").strip().lower() in ("1", "true", "yes"),
        task_id=env.get("TRAINYARD_TASK_ID") or None,
        run_dir=Path(run_dir) if run_dir else None,
        attempt=int(attempt) if (attempt := text("TRAINYARD_ATTEMPT") or "").isdigit() else None,
        worker=env.get("TRAINYARD_WORKER") or None,
        secrets={k: v for k, v in env.items() if k.startswith(SECRET_PREFIX)},
    )


@functools.cache
def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


_last: tuple[tuple[tuple[str, str], ...], Settings] | None = None


def settings() -> Settings:
    """The current settings: re-read whenever a ``TRAINYARD_*`` variable (or ``HOME``) changed, so
    tests and subprocesses can change the environment; otherwise the last ones (one pass over it)."""
    global _last
    snapshot = tuple((k, v) for k, v in os.environ.items() if k.startswith("TRAINYARD_") or k == "HOME")
    last = _last
    if last is not None and last[0] == snapshot:
        return last[1]
    current = from_env(dict(snapshot))
    _last = (snapshot, current)
    return current
