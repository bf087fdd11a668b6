"""The Optuna study kept in Redis: Optuna's ``JournalStorage`` over a trainyard journal backend.

Each operation is one JSON entry of a Redis list (``ty:study:<id>:journal``): appended with one
RPUSH, read back with one LRANGE from the last entry seen, so a restarted controller loads a study
of thousands of trials in one round trip. No snapshot, no pickle (Optuna's own Redis backend reads
one key per entry and stores a pickled snapshot).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from redis import Redis

from ...queues import studies


class RedisJournal(BaseJournalBackend):
    """Optuna journal operations as JSON entries of one Redis list."""

    def __init__(self, conn: Redis, study_id: str):
        self.conn, self.study_id = conn, study_id

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        return [json.loads(raw) for raw in studies.journal_read(self.conn, self.study_id, log_number_from)]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        studies.journal_append(self.conn, self.study_id, [json.dumps(entry) for entry in logs])


def open_study(
    conn: Redis,
    study_id: str,
    directions: list[str],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """The study of ``study_id``, created on first use and loaded (whole) afterwards."""
    storage = JournalStorage(RedisJournal(conn, study_id))
    return optuna.create_study(
        storage=storage,
        study_name=study_id,
        directions=directions,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
