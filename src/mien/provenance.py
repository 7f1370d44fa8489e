"""How a table was made: mien version, model checksums, every analysis option, the inputs' checksums.

Every output carries this record (Parquet key-value metadata, `OUT.meta.json` beside CSV/JSONL,
the HTML report, the server's results); `mien info OUT` prints it. `fingerprint` reduces it to
what decides the numbers (options and model files), which `mien batch` uses so that one dataset
never mixes configurations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from importlib import metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

from mien.models.sources import SOURCES


def mien_version() -> str:
    try:
        return metadata.version("mien")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _thresholds_sha() -> str:
    return hashlib.sha256((files("mien") / "data" / "openset.json").read_bytes()).hexdigest()


def models_used(expression: bool = True, attributes: bool = False) -> list[str]:
    """Names of the registered models a pipeline with these options runs."""
    return ["face_landmarker"] + (["expression"] if expression else []) + (["age", "gender"] if attributes else [])


def options_dict(options: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of an options dataclass (nested ones included), or a dict as given."""
    if dataclasses.is_dataclass(options):
        out = {}
        for f in dataclasses.fields(options):
            if not f.init:  # derived values are not options
                continue
            value = getattr(options, f.name)
            out[f.name] = options_dict(value) if dataclasses.is_dataclass(value) else value
        return out
    return dict(options)


def provenance(kind: str, options: dict[str, Any], models: list[str],
               inputs: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """The record for an output: `kind` ("images", "video", "batch"...), the options that made it, the
    model files (name, file, SHA-256), the open-set thresholds' checksum and the inputs' checksums."""
    return {
        "made_by": f"mien {mien_version()}",
        "mien_version": mien_version(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kind": kind,
        "options": options,
        "models": {name: {"file": SOURCES[name]["file"], "sha256": SOURCES[name]["sha256"]} for name in models},
        "openset_thresholds_sha256": _thresholds_sha(),
        "inputs": inputs or [],
    }


def fingerprint(record: dict[str, Any]) -> str:
    """Short hash of what decides the numbers: options, model checksums and thresholds (not time or inputs)."""
    decisive = {key: record.get(key) for key in ("options", "models", "openset_thresholds_sha256")}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flat(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable 'name: old -> new' lines between two records' options and models."""
    lines = []
    before, after = _flat(old.get("options", {})), _flat(new.get("options", {}))
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a != b:
            lines.append(f"{key}: {a} -> {b}")
    for name in sorted(set(old.get("models", {})) | set(new.get("models", {}))):
        a = (old.get("models", {}).get(name) or {}).get("sha256")
        b = (new.get("models", {}).get(name) or {}).get("sha256")
        if a != b:
            lines.append(f"model {name}: {str(a)[:12]} -> {str(b)[:12]}")
    if old.get("openset_thresholds_sha256") != new.get("openset_thresholds_sha256"):
        lines.append("open-set thresholds changed")
    return lines
