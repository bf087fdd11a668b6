"""Printing: rich tables for people, ``--json`` for scripts, one-line errors."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

STATUS_STYLE = {
    "draft": "dim",
    "queued": "cyan",
    "running": "bold yellow",
    "completed": "green",
    "failed": "bold red",
    "aborted": "magenta",
}


def console() -> Console:
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
    return Console(width=width, soft_wrap=False, highlight=False)


# What must never reach a terminal raw: C0 and C1 control characters (escape sequences, bell,
# carriage return, backspace), line and paragraph separators and bidirectional overrides.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\x1b": "\\e"}


def _escaped(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def printable(text: str, newlines: bool = False) -> str:
    """``text`` with every control character shown escaped (``\\e[31m``, ``\\n``), so names, log
    lines and errors from anyone can neither drive the terminal nor split a table's rows.
    ``newlines``: keep line breaks (text that is several lines on purpose)."""
    if newlines:
        return "\n".join(_UNSAFE.sub(_escaped, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escaped, text)


def say(message: object = "", err: bool = False) -> None:
    """Print a line (or lines) for people, control characters escaped."""
    click.echo(printable(str(message), newlines=True), err=err)


def fail(message: str, code: int = 1) -> NoReturn:
    say(f"error: {message}", err=True)
    raise SystemExit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    tab = Table(title=escape(printable(title)) if title else None, show_edge=False, header_style="bold")
    for column in columns:
        tab.add_column(column, overflow="fold")
    for row in rows:
        tab.add_row(*[_cell(cell) for cell in row])
    console().print(tab)


def _cell(value: Any) -> Text | str:
    if isinstance(value, Text):
        return value
    return "" if value is None else escape(printable(str(value)))


def styled_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def ago(ts: float | None) -> str:
    if not ts:
        return ""
    delta = max(0.0, time.time() - ts)
    if delta < 60:
        return f"{delta:.0f}s ago"
    if delta < 3600:
        return f"{delta / 60:.0f}m ago"
    if delta < 86400:
        return f"{delta / 3600:.1f}h ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def duration(start: float | None, end: float | None) -> str:
    if not start:
        return ""
    seconds = (end or time.time()) - start
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
