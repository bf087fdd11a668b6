"""Hyper-parameter studies in Redis (the storage is the backend's: ``backend/studies.py``)."""

from .backend.studies import (
    StudyNotFound,
    clear_stop,
    count,
    delete,
    journal_append,
    journal_read,
    list_ids,
    load,
    load_many,
    metric_entries,
    put_trial,
    read,
    request_stop,
    save,
    stop_requested,
    trials,
)

__all__ = [
    "StudyNotFound",
    "clear_stop",
    "count",
    "delete",
    "journal_append",
    "journal_read",
    "list_ids",
    "load",
    "load_many",
    "metric_entries",
    "put_trial",
    "read",
    "request_stop",
    "save",
    "stop_requested",
    "trials",
]
