"""ClearML's ``Logger`` over ``current_task()``: scalars are trainyard metrics; tables, plots,
histograms and images are stored as artifacts (``plot-<title>-<series>``, ``table-...``,
``image-...``) with ``clearml_type`` in their metadata, listed on the task's page."""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from ..runtime.task_api import RunContext, current_task
from .errors import Refusing, refuse_unknown

SINGLE_VALUE_TITLE = "Summary"
SINGLE_VALUE_STEP = -(2**31)  # ClearML reports single values at this iteration


def _artifact_name(kind: str, title: str, series: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{kind}-{title}-{series}").strip("_.-") or kind
    return text[:128]


class Logger(metaclass=Refusing):
    """Reports of the task this process runs."""

    def __init__(self, context: RunContext):
        self._ctx = context

    @classmethod
    def current_logger(cls) -> Logger:
        from .task import Task

        task = Task.current_task()
        return task.get_logger() if task is not None else cls(current_task())

    # -- scalars -----------------------------------------------------------------------------
    def report_scalar(self, title: str, series: str, value: float, iteration: int | None = None) -> None:
        self._ctx.log_metric(title, series, value, step=iteration)

    def report_single_value(self, name: str, value: float) -> None:
        """A scalar of title ``Summary`` at ClearML's iteration -2**31."""
        self._ctx.log_metric(SINGLE_VALUE_TITLE, name, value, step=SINGLE_VALUE_STEP)

    def report_text(self, msg: Any, level: int = logging.INFO, print_console: bool = True, *args, **kwargs) -> None:
        """A line in the task's console log."""
        print(str(msg), flush=True)

    # -- non-scalars: artifacts ---------------------------------------------------------------
    def _store(self, kind: str, title: str, series: str, iteration: int | None, data: bytes, ext: str) -> None:
        name = _artifact_name(kind, title, series)
        with tempfile.TemporaryDirectory(prefix="report-") as folder:
            path = Path(folder) / f"{name}.{ext}"
            path.write_bytes(data)
            meta = {"clearml_type": kind, "title": title, "series": series, "iteration": iteration}
            self._ctx.upload_artifact(name, str(path), meta)

    def report_table(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        table_plot: Any = None,
        csv: str | None = None,
        url: str | None = None,
        extra_layout: dict | None = None,
        extra_data: dict | None = None,
    ) -> None:
        """A table (a DataFrame, a list of rows, or a CSV file/URL) stored as CSV."""
        if table_plot is not None and hasattr(table_plot, "to_csv"):
            data = table_plot.to_csv().encode()
        elif table_plot is not None:
            import csv as csv_module

            buffer = io.StringIO()
            csv_module.writer(buffer).writerows(table_plot)
            data = buffer.getvalue().encode()
        elif csv or url:
            from .storage import StorageManager

            data = Path(StorageManager.get_local_copy(csv or url)).read_bytes()
        else:
            raise ValueError("report_table needs table_plot, csv or url")
        self._store("table", title, series, iteration, data, "csv")

    def report_plotly(self, title: str, series: str, figure: Any, iteration: int | None = None, **_: Any) -> None:
        """A plotly figure (or its dict) stored as JSON."""
        data = figure.to_dict() if hasattr(figure, "to_dict") else figure
        self._store("plot", title, series, iteration, json.dumps(data, default=_plain).encode(), "json")

    def report_histogram(
        self,
        title: str,
        series: str,
        values: Any,
        iteration: int | None = None,
        labels: list | None = None,
        xlabels: list | None = None,
        xaxis: str | None = None,
        yaxis: str | None = None,
        mode: str | None = None,
        data_args: dict | None = None,
        extra_layout: dict | None = None,
    ) -> None:
        """A histogram (bar values) stored as a plotly-style JSON figure."""
        bars = [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
        figure = {
            "data": [{"type": "bar", "y": bars, "x": xlabels or list(range(len(bars))), "name": series}],
            "layout": {"title": title, "xaxis": {"title": xaxis}, "yaxis": {"title": yaxis}},
        }
        self._store("plot", title, series, iteration, json.dumps(figure).encode(), "json")

    def report_scatter2d(self, title: str, series: str, scatter: Any, iteration: int | None = None, **_: Any) -> None:
        points = scatter.tolist() if hasattr(scatter, "tolist") else [list(p) for p in scatter]
        trace = {"type": "scatter", "x": [p[0] for p in points], "y": [p[1] for p in points], "name": series}
        figure = {"data": [trace]}
        self._store("plot", title, series, iteration, json.dumps(figure).encode(), "json")

    def report_matplotlib_figure(
        self,
        title: str,
        series: str,
        figure: Any,
        iteration: int | None = None,
        report_image: bool = False,
        report_interactive: bool = True,
    ) -> None:
        """A matplotlib figure stored as PNG."""
        buffer = io.BytesIO()
        target = figure.gcf() if hasattr(figure, "gcf") else figure  # pyplot itself is accepted too
        target.savefig(buffer, format="png")
        self._store("image", title, series, iteration, buffer.getvalue(), "png")

    def report_image(
        self,
        title: str,
        series: str,
        iteration: int | None = None,
        local_path: str | None = None,
        image: Any = None,
        matrix: Any = None,
        max_image_history: int | None = None,
        delete_after_upload: bool = False,
        url: str | None = None,
    ) -> None:
        """An image from a file, a PIL image or a numpy array, stored as PNG (a file as it is)."""
        if local_path or url:
            from .storage import StorageManager

            path = Path(StorageManager.get_local_copy(local_path or url))
            ext = path.suffix.lstrip(".") or "png"
            self._store("image", title, series, iteration, path.read_bytes(), ext)
            return
        picture = image if image is not None else matrix
        if picture is None:
            raise ValueError("report_image needs local_path, image or matrix")
        if not hasattr(picture, "save"):
            from PIL import Image

            picture = Image.fromarray(picture)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        self._store("image", title, series, iteration, buffer.getvalue(), "png")

    def flush(self, wait: bool = False) -> bool:
        """Reports are written as they are made: nothing waits."""
        return True

    def __getattr__(self, name: str):
        refuse_unknown("Logger", name)


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)
