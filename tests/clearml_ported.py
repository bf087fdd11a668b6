"""The ClearML examples in tests/clearml_examples: copied to a test folder, checked to differ from
ClearML's upstream files in their import lines only, and run as scripts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent / "clearml_examples"
IRIS_URL = "https://github.com/allegroai/events/raw/master/odsc20-east/generic/iris_dataset.pkl"
FILES_COMMUNITY_URL = (
    "https://files.community.clear.ml/examples%252F.pipelines%252FPipeline%20demo/stage_data."
    "8f17b6316ce442ce8904f6fccb1763de/artifacts/dataset/f6d08388e9bc44c86cab497ad31403c4.iris_dataset.pkl"
)

# sha256 of ClearML's own files (allegroai/clearml 39e206f9, examples/...)
UPSTREAM = {
    "automation/programmatic_orchestration.py": "4983636daed48f7695a1ae0edd9943fcaf86c859489216a1f3d24b0ddd748460",
    "automation/toy_base_task.py": "7a42aa6816ad2549e948226ecd69533ac01d8fae3483259468e29a3afac8e15d",
    "pipeline/pipeline_from_tasks.py": "7894705653cb788f2cf95d9672351b2b0645dda8a00e5bbe71a3deca6d55b75d",
    "pipeline/step1_dataset_artifact.py": "828c4240a8e65f0cac3b1636872ec3b4dcb02bbdfb95b31598ffdafae46ca8f1",
    "pipeline/step2_data_processing.py": "7f2e11c9e4f31be86d92634253ea0debf7ad4b96fa7bd155ecde28b78778c768",
    "pipeline/step3_train_model.py": "fb54736bca5fc258156adbfa9ea5323c95b790dc0fd85320a0954b8f2e11f875",
    "pipeline/pipeline_from_functions.py": "2746e6f062ae04b1d65daba3edea65a821a6cdcb836b3ad5014ca12970841048",
    "pipeline/pipeline_from_decorator.py": "4282ecc7ec8d79efbcb4d654caed0b236995634bfa20b51c0f7b66aa1a4290c8",
}


def check_only_imports_changed(rel: str) -> None:
    """The ported file is the upstream file with `trainyard.clearml` for `clearml` in import lines."""
    lines = (EXAMPLES / rel).read_text().splitlines(keepends=True)
    restored = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("from trainyard.clearml", "import trainyard.clearml")):
            line = line.replace("trainyard.clearml", "clearml", 1)
        else:
            assert "trainyard" not in line, f"{rel}: a line other than an import mentions trainyard: {line!r}"
        restored.append(line)
    digest = hashlib.sha256("".join(restored).encode()).hexdigest()
    assert digest == UPSTREAM[rel], f"{rel} differs from ClearML's file beyond its import lines"


def copy_example(rel: str, folder: Path, replace: dict[str, str] | None = None) -> Path:
    """Copy an example into ``folder`` (outside any git checkout: it travels as its own source),
    replacing the given text (data URLs only)."""
    check_only_imports_changed(rel)
    text = (EXAMPLES / rel).read_text()
    for old, new in (replace or {}).items():
        assert old in text, f"{rel} has no {old!r}"
        text = text.replace(old, new)
    target = folder / Path(rel).name
    target.write_text(text)
    return target


def write_iris_pickle(path: Path) -> Path:
    """The data behind ClearML's iris_dataset.pkl (sklearn's bundled iris), as a local file."""
    import pickle

    from sklearn.datasets import load_iris

    path.write_bytes(pickle.dumps(load_iris()))
    return path


def run_script(path: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, env=full, cwd=path.parent, timeout=timeout
    )
