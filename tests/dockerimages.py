"""Test images built locally (there is no registry here): a busybox root filesystem, imported.

The image has /bin/sh and the busybox tools, no Python: docker-mode tasks in the tests are
shell commands that report through the run-folder protocol directly (events.jsonl, artifacts/).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile

BUSYBOX_IMAGE = "trainyard-test/busybox:1"


def docker_engine():
    """A client when a Docker engine answers, else None."""
    try:
        import docker

        engine = docker.from_env(timeout=30)
        engine.ping()
        return engine
    except Exception:
        return None


def busybox_binary() -> str | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if shutil.which(candidate):
            return candidate
    return shutil.which("busybox")


def ensure_busybox_image(engine) -> str:
    """Import a busybox image once (a static busybox with a symlink per applet)."""
    import docker

    try:
        engine.images.get(BUSYBOX_IMAGE)
        return BUSYBOX_IMAGE
    except docker.errors.ImageNotFound:
        pass
    binary = busybox_binary()
    if binary is None:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    applets = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "workspace", "etc", "root"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(binary, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    engine.api.import_image_from_data(
        buffer.getvalue(), repository=BUSYBOX_IMAGE.split(":")[0], tag=BUSYBOX_IMAGE.split(":")[1]
    )
    return BUSYBOX_IMAGE
