"""The artifact store: a local folder by default, any fsspec URL (s3://, gs://, ...) when configured."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import shutil
from pathlib import Path

from ..queues.record import Artifact

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """Puts files under ``<root>/<task id>/<name>/<file name>`` and describes them."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.local = "://" not in root or root.startswith("file://")
        if self.local:
            self.root = self.root.removeprefix("file://")

    def put_log(self, task_id: str, attempt: int, source: Path) -> str:
        """Keep a run's whole log beside the task's artifacts; returns its URI."""
        return self._copy(source, task_id, ".logs", f"attempt-{attempt}.log")

    def _copy(self, source: Path, task_id: str, folder: str, filename: str) -> str:
        if self.local:
            target = Path(self.root) / task_id / folder / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            return str(target)
        import fsspec  # optional: only for remote stores

        uri = f"{self.root}/{task_id}/{folder}/{filename}"
        with fsspec.open(uri, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        return uri

    def put(self, task_id: str, name: str, source: Path, metadata: dict | None = None) -> Artifact:
        if not NAME.match(name):
            raise ValueError(f"bad artifact name {name!r}")
        filename = source.name
        if not NAME.match(filename):
            filename = "data" + "".join(source.suffixes[-1:])
        digest = sha256_of(source)
        size = source.stat().st_size
        uri = self._copy(source, task_id, name, filename)
        return Artifact(
            name=name,
            uri=uri,
            sha256=digest,
            size=size,
            content_type=mimetypes.guess_type(filename)[0],
            metadata=metadata or {},
        )
