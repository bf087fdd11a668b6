"""Python objects as artifact files in safe formats, and back (what ClearML's ``upload_artifact`` /
``Artifact.get`` do, without pickle unless it is asked for).

| object | file | read back as |
|---|---|---|
| numpy array (not of objects) | ``.npy`` (``allow_pickle=False``) | the array |
| pandas DataFrame / Series | ``.parquet`` (pyarrow) or ``.csv`` | DataFrame / Series, index kept |
| dict, list, number, bool, None | ``.json`` | the value |
| a str that is not a path | ``.txt`` | the str |
| PIL image | ``.png`` | the image |
| tuple/list holding any of the above | ``.zip`` of the parts and a manifest | tuple / list |
| a path (file / folder) | as is (a folder zipped) | a local path |
| anything else | ``.pkl``, only when asked (*) | the object, only when the reader asks too (*) |

(*) ``auto_pickle=True`` / ``Artifact.get(allow_pickle=True)``, or ``TRAINYARD_CLEARML_PICKLE=1``.

pandas, numpy, pyarrow and Pillow are optional (``pip install trainyard[clearml]``): each is imported
only when an object of its kind is stored or read.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from ..settings import settings
from .errors import UnsupportedCall

PICKLE_ENV = "TRAINYARD_CLEARML_PICKLE"
MANIFEST = "manifest.json"


class UnsafeArtifact(UnsupportedCall):
    """An object that only pickle can carry, without an explicit request for pickle."""


def pickle_allowed() -> bool:
    """The process asked for pickle explicitly (``TRAINYARD_CLEARML_PICKLE=1``)."""
    return settings().clearml_pickle


def _module(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def kind_of(obj: Any) -> str | None:
    """The safe format ``obj`` is stored in, or None when only pickle could store it."""
    module = _module(obj)
    if module == "numpy" and type(obj).__name__ == "ndarray":
        return "npy" if obj.dtype != object else None
    if module == "pandas" and type(obj).__name__ in ("DataFrame", "Series"):
        return "frame"
    if module == "PIL" and hasattr(obj, "save") and hasattr(obj, "mode"):
        return "png"
    if isinstance(obj, str):
        return "txt"
    if _is_json(obj):
        return "json"
    if module == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return "json"  # a numpy scalar
    if isinstance(obj, (tuple, list)) and all(kind_of(item) is not None for item in obj):
        return "seq"
    return None


def write(obj: Any, folder: Path, name: str, auto_pickle: bool = False) -> Path:
    """Write ``obj`` as ``folder/<name>.<ext>`` in its safe format; returns the file."""
    kind = kind_of(obj)
    if kind is None:
        if not (auto_pickle or pickle_allowed()):
            raise UnsafeArtifact(
                f"artifact {name!r}: a {type(obj).__module__}.{type(obj).__name__} can only be stored with pickle; "
                f"pass auto_pickle=True (or set {PICKLE_ENV}=1) to store it that way"
            )
        import pickle

        path = folder / f"{name}.pkl"
        path.write_bytes(pickle.dumps(obj))
        return path
    data, ext = _encode(obj, kind)
    path = folder / f"{name}.{ext}"
    path.write_bytes(data)
    return path


def _encode(obj: Any, kind: str) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if kind == "npy":
        import numpy as np

        np.save(buffer, obj, allow_pickle=False)
        return buffer.getvalue(), "npy"
    if kind == "frame":
        return _encode_frame(obj)
    if kind == "png":
        obj.save(buffer, format="PNG")
        return buffer.getvalue(), "png"
    if kind == "txt":
        return obj.encode("utf-8"), "txt"
    if kind == "json":
        value = obj.item() if hasattr(obj, "item") and not isinstance(obj, (dict, list)) else obj
        return json.dumps(value, allow_nan=False, indent=1).encode("utf-8"), "json"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:  # a sequence
        parts = []
        for index, item in enumerate(obj):
            data, ext = _encode(item, kind_of(item) or "")
            filename = f"{index}.{ext}"
            archive.writestr(filename, data)
            parts.append(filename)
        archive.writestr(MANIFEST, json.dumps({"type": type(obj).__name__, "parts": parts}))
    return buffer.getvalue(), "seq.zip"


def _encode_frame(obj: Any) -> tuple[bytes, str]:
    series = type(obj).__name__ == "Series"
    frame = obj.to_frame(name="0" if obj.name is None else obj.name) if series else obj
    buffer = io.BytesIO()
    ext = "csv"
    try:
        frame.to_parquet(buffer)
        ext = "parquet"
    except (ImportError, ValueError, TypeError):  # no pyarrow, or column names parquet refuses
        buffer = io.BytesIO()
        frame.to_csv(buffer)
    return buffer.getvalue(), f"series.{ext}" if series else ext


def read(path: Path, allow_pickle: bool = False) -> Any:
    """The object stored in ``path`` (by its extension); other files come back as their path."""
    name = path.name
    if name.endswith(".pkl"):
        if not (allow_pickle or pickle_allowed()):
            raise UnsafeArtifact(
                f"{name} is a pickle: it is not loaded unless asked for (Artifact.get(allow_pickle=True), "
                f"or {PICKLE_ENV}=1); get_local_copy() gives the file"
            )
        import pickle

        return pickle.loads(path.read_bytes())
    for suffix in (".npy", ".parquet", ".csv", ".png", ".json", ".txt", ".seq.zip"):
        if name.endswith(suffix):
            return _decode(path.read_bytes(), name)
    return path


def _decode(data: bytes, name: str) -> Any:
    if name.endswith(".npy"):
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if name.endswith(".parquet") or name.endswith(".csv"):
        import pandas as pd

        if name.endswith(".parquet"):
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            frame = pd.read_csv(io.BytesIO(data), index_col=0)
        if name.endswith((".series.parquet", ".series.csv")):
            column = frame.columns[0]
            series = frame[column]
            return series.rename(None) if str(column) == "0" else series
        return frame
    if name.endswith(".png"):
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    if name.endswith(".json"):
        return json.loads(data)
    if name.endswith(".txt"):
        return data.decode("utf-8")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # a sequence
        manifest = json.loads(archive.read(MANIFEST))
        items = [_decode(archive.read(part), part) for part in manifest["parts"]]
    return tuple(items) if manifest.get("type") == "tuple" else items
