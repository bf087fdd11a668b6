"""``StorageManager``: local paths and fsspec URLs (s3://, gs://, http(s)://, file://) as local files."""

from __future__ import annotations

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

from ..queues.errors import InvalidInput
from ..settings import settings
from .errors import Refusing


def _local_path(url: str) -> Path | None:
    """The local file ``url`` names, or None for a remote URL."""
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if "://" not in url:
        return Path(url).expanduser()
    return None


def _cache_dir(context: str | None) -> Path:
    return settings().home / "storage-cache" / (context or "global")


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise InvalidInput("remote URLs need fsspec: pip install 'trainyard[clearml]'") from None
    return fsspec


class StorageManager(metaclass=Refusing):
    """ClearML's StorageManager for local paths and fsspec URLs; downloads are cached per URL."""

    @classmethod
    def get_local_copy(
        cls,
        remote_url: str,
        cache_context: str | None = None,
        extract_archive: bool = True,
        name: str | None = None,
        force_download: bool = False,
    ) -> str:
        """A local path holding ``remote_url``'s content (a zip is extracted when asked)."""
        if not isinstance(remote_url, str) or not remote_url:
            raise InvalidInput(f"StorageManager.get_local_copy: remote_url must be a URL or path, got {remote_url!r}")
        local = _local_path(remote_url)
        if local is not None:
            if not local.exists():
                raise InvalidInput(f"StorageManager.get_local_copy: {local} does not exist")
            path = local
        else:
            digest = hashlib.sha256(remote_url.encode()).hexdigest()[:24]
            filename = name or os.path.basename(remote_url.split("?", 1)[0]) or "data"
            path = _cache_dir(cache_context) / digest / filename
            if force_download or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{filename}.part")
                with _fsspec().open(remote_url, "rb") as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, path)
        if extract_archive and path.is_file() and zipfile.is_zipfile(path) and path.suffix == ".zip":
            target = _cache_dir(cache_context) / "extracted" / hashlib.sha256(str(path).encode()).hexdigest()[:24]
            if not target.exists():
                tmp_dir = target.with_name(target.name + ".part")
                shutil.rmtree(tmp_dir, ignore_errors=True)
                with zipfile.ZipFile(path) as archive:
                    _safe_extract(archive, tmp_dir)
                os.replace(tmp_dir, target)
            return str(target)
        return str(path)

    @classmethod
    def upload_file(
        cls, local_file: str, remote_url: str, wait_for_upload: bool = True, retries: int | None = None
    ) -> str:
        """Copy ``local_file`` to ``remote_url`` (a path or fsspec URL); returns ``remote_url``."""
        source = Path(local_file)
        if not source.is_file():
            raise InvalidInput(f"StorageManager.upload_file: {source} is not a file")
        local = _local_path(remote_url)
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, local)
        else:
            with _fsspec().open(remote_url, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        return remote_url

    @classmethod
    def exists_file(cls, remote_url: str) -> bool:
        local = _local_path(remote_url)
        if local is not None:
            return local.is_file()
        fs, path = _fsspec().core.url_to_fs(remote_url)
        return bool(fs.isfile(path))


def _safe_extract(archive: zipfile.ZipFile, target: Path) -> None:
    """Extract members that stay inside ``target`` (no absolute paths, no ``..``)."""
    root = target.resolve()
    for member in archive.infolist():
        dest = (target / member.filename).resolve()
        if not dest.is_relative_to(root):
            raise InvalidInput(f"archive member {member.filename!r} would land outside {target}")
    archive.extractall(target)
