"""Secrets: values that live on the workers, reach the task process, and are masked everywhere else.

A task never carries a secret value. It names one: an env entry in ``execution.secret_env``
(``{"HF_TOKEN": "hf"}``) or a parameter whose value is ``{"$secret": "hf"}``. The worker resolves
the name from its own environment (``TRAINYARD_SECRET_HF``) into the task's environment,
``task.json`` and argv only, so Redis, records, CLI and API output hold the name alone.
Whatever the task prints is masked before it leaves the worker: every secret the worker knows
(``TRAINYARD_SECRET_*``, its Redis, git and registry credentials) becomes ``***`` in log lines,
the stored log file, the log tail, errors and outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..queues import config
from ..queues.config import SECRET_PREFIX, Settings
from ..queues.params import is_secret_ref
from ..queues.record import TaskRecord
from .launch import PrepareError

CREDENTIALS = ("redis_password", "git_token", "registry_password")  # Settings fields masked as they are
MASK = "***"
MIN_LENGTH = 4  # shorter values would mask ordinary text


def env_name(secret: str) -> str:
    """``hf-token`` -> ``TRAINYARD_SECRET_HF_TOKEN``."""
    return SECRET_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", secret).upper()


def known_values(settings: Settings | None = None, urls: Iterable[str | None] = ()) -> list[str]:
    """Every secret value the worker holds: its secrets, its credentials, passwords in its URLs."""
    settings = config.current() if settings is None else settings
    values = list(settings.secrets.values())
    values += [getattr(settings, name) or "" for name in CREDENTIALS]
    for url in [settings.redis_url, *urls]:
        if url:
            password = urlsplit(url).password
            if password:
                values.append(unquote(password))
    return [v for v in values if v]


class Redactor:
    """Replaces known secret values (and their URL-encoded forms) with ``***``."""

    def __init__(self, values: Iterable[str]):
        forms = set()
        for value in values:
            for form in (value, quote(value, safe=""), quote(value)):
                if len(form) >= MIN_LENGTH:
                    forms.add(form)
        ordered = sorted(forms, key=len, reverse=True)  # the longest form first
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, text: str | None) -> str | None:
        if text is None or self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any) -> Any:
        """A JSON value with every string in it masked."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        return value


def _lookup(name: str, environ: Mapping[str, str], where: str) -> str:
    value = environ.get(env_name(name))
    if value is None:
        raise PrepareError(f"{where} needs secret {name!r}, which this worker does not hold (set {env_name(name)})")
    return value


def _resolve(value: Any, environ: Mapping[str, str], where: str) -> Any:
    if is_secret_ref(value):
        return _lookup(value["$secret"], environ, where)
    if isinstance(value, list):
        return [_resolve(v, environ, where) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, environ, where) for k, v in value.items()}
    return value


def resolve_record(record: TaskRecord, secrets: Mapping[str, str] | None = None) -> TaskRecord:
    """A copy of ``record`` with its secret references filled in, for the task process only
    (never stored), from ``secrets`` (``TRAINYARD_SECRET_<NAME>`` -> value; default: the worker's
    settings). Raises PrepareError naming a secret this worker does not hold."""
    environ = config.current().secrets if secrets is None else secrets
    params = {k: _resolve(v, environ, f"parameter {k}") for k, v in record.parameters.items()}
    env = dict(record.execution.env)
    for var, name in record.execution.secret_env.items():
        env[var] = _lookup(name, environ, f"env {var}")
    if params == record.parameters and env == record.execution.env:
        return record
    resolved = record.model_copy(deep=True)
    resolved.parameters = params
    resolved.execution.env = env
    return resolved
