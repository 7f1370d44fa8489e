"""How a table was made: mien version, model checksums, every analysis option, the inputs' checksums.

Every output carries this record (Parquet key-value metadata, `OUT.meta.json` beside CSV/JSONL,
the HTML report, the server's results); `mien info OUT` prints it. `fingerprint` reduces it to
what decides the numbers (options, model files, the valence/arousal placement), which `mien batch`
uses so that one dataset never mixes configurations.
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

from mien.expression.affect import SOURCE as VALENCE_AROUSAL_SOURCE
from mien.face.mesh import PIPELINE as MESH_PIPELINE
from mien.models.sources import SOURCES

METADATA_KEY = b"mien"  # Parquet key-value metadata entry holding the record
HTML_ID = "mien-provenance"  # <pre id=...> holding the record's JSON in HTML reports (no scripts)


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


def models_used(expression: bool = True, attributes: bool = False, centerface: bool = True) -> list[str]:
    """Names of the registered models a pipeline with these options runs, or may run (the full-range detector on
    faces the mesh cannot read; CenterFace, where the detector mode uses it, beyond portraits)."""
    return (["face_landmarker", "face_detector_full_range"]
            + (["face_detector_centerface"] if centerface else []) + ["au_occurrence"]
            + (["expression", "compound"] if expression else []) + (["age", "gender"] if attributes else []))


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
        "valence_arousal": VALENCE_AROUSAL_SOURCE,
        "mesh": MESH_PIPELINE,
        "inputs": inputs or [],
    }


def analysis_provenance(kind: str, options: Any, inputs: list[dict[str, str]] | None = None,
                        **extra: Any) -> dict[str, Any]:
    """`provenance` of a run of the image pipeline with these `AnalyzerOptions` (plus `extra` settings)."""
    used = models_used(options.expression, options.attributes, centerface=options.mode != "fast")
    return provenance(kind, {**options_dict(options), **extra}, used, inputs)


def fingerprint(record: dict[str, Any]) -> str:
    """Short hash of what decides the numbers: options, model checksums and thresholds (not time or inputs)."""
    decisive = {key: record.get(key) for key in ("options", "models", "openset_thresholds_sha256", "valence_arousal",
                                              "mesh")}
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flat_options(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            out.update(flat_options(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable 'name: old -> new' lines between two records' options and models."""
    lines = []
    before, after = flat_options(old.get("options", {})), flat_options(new.get("options", {}))
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


def sidecar_path(path: str | Path) -> Path:
    """`OUT.meta.json`: where the record of a CSV or JSON Lines table is kept."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def html_block(record: dict[str, Any]) -> str:
    """The record as an HTML fragment for a report: a summary line that opens to the full JSON (which
    `read_provenance` reads back); plain HTML, no script."""
    import html

    text = json.dumps(record, indent=1, default=str)
    models = ", ".join(f"{name} {m['sha256'][:12]}" for name, m in record.get("models", {}).items())
    return (f"<details><summary>How this was made: {html.escape(record.get('made_by', 'mien'))}, models "
            f'{html.escape(models)}</summary><pre id="{HTML_ID}">{html.escape(text)}</pre></details>')


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The record of anything mien wrote: a Parquet table (key-value metadata), a CSV/JSONL table
    (`OUT.meta.json`), an HTML report, or a batch folder (`dataset.json`); None if it has none."""
    import re

    path = Path(path)
    if path.is_dir():
        dataset = path / "dataset.json"
        return json.loads(dataset.read_text())["provenance"] if dataset.exists() else None
    if sidecar_path(path).exists():
        return json.loads(sidecar_path(path).read_text())
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") and path.is_file():
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else None
    if suffix in (".html", ".htm") and path.is_file():
        import html

        found = re.search(rf'<pre id="{HTML_ID}">(.*?)</pre>', path.read_text(), re.S)
        return json.loads(html.unescape(found.group(1))) if found else None
    return None
