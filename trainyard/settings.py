"""Settings read from the environment (``TRAINYARD_*``), with defaults for a single machine."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where trainyard keeps its state and which Redis it talks to."""

    home: Path
    redis_url: str | None
    artifacts_url: str
    user: str
    run_dir: Path | None = None  # set by the worker for a task process (TRAINYARD_RUN_DIR)

    @property
    def embedded_dir(self) -> Path:
        return self.home / "redis"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TRAINYARD_HOME") or Path.home() / ".trainyard").expanduser()
        return cls(
            home=home,
            redis_url=os.environ.get("TRAINYARD_REDIS_URL") or None,
            artifacts_url=os.environ.get("TRAINYARD_ARTIFACTS") or str(home / "artifacts"),
            user=os.environ.get("TRAINYARD_USER") or _login_name(),
            run_dir=Path(os.environ["TRAINYARD_RUN_DIR"]) if os.environ.get("TRAINYARD_RUN_DIR") else None,
        )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def settings() -> Settings:
    """The current settings (re-read each call, so tests and subprocesses can change env)."""
    return Settings.from_env()
