"""Cron expressions and time zones (croniter): checking them and finding the next tick."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator


def check_cron(expression: str) -> str:
    """5 fields (minute hour day month weekday), or 6 with seconds as the last field."""
    text = " ".join(str(expression).split())
    if len(text.split()) not in (5, 6) or not croniter.is_valid(text):
        raise ValueError(f"not a valid cron expression: {expression!r} (5 fields, or 6 with seconds last)")
    return text


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Paris' or 'UTC')") from None
    return name


CronExpression = Annotated[str, AfterValidator(check_cron)]  # a model field checked by check_cron
TimeZoneName = Annotated[str, AfterValidator(check_timezone)]  # a model field checked by check_timezone


def next_tick(expression: str, tz: str, after: float) -> float:
    """The first tick strictly after ``after`` (a Unix time), as a Unix time."""
    start = datetime.fromtimestamp(after, ZoneInfo(tz))
    return croniter(expression, start, second_at_beginning=False).get_next(datetime).timestamp()


def utc_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
