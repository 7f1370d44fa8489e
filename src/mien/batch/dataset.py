"""`dataset.json`: what a batch output folder is, as of its latest run.

It holds the provenance of the configuration (options, model checksums: `mien.provenance`) and,
for every input of the latest run, which finished task owns its rows. Readers (`read_results`,
`mien query`) return exactly those rows: each input once, under one configuration. A run with
other options or models is refused rather than mixed in (`ConfigurationMismatch`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mien.provenance import differences, fingerprint

DATASET = "dataset.json"


class ConfigurationMismatch(ValueError):
    """The folder holds results made with other options or models."""


def read_dataset(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / DATASET
    return json.loads(path.read_text()) if path.exists() else None


def check_configuration(out_dir: str | Path, record: dict[str, Any]) -> None:
    """Raise `ConfigurationMismatch` (one line naming the differences) if `out_dir` was made otherwise."""
    old = read_dataset(out_dir)
    if old is None or old.get("fingerprint") == fingerprint(record):
        return
    changes = "; ".join(differences(old["provenance"], record)) or "another configuration"
    raise ConfigurationMismatch(f"{out_dir} holds results made with other options or models ({changes}); "
                                "write to another output folder, or delete this one to start over")


def write_dataset(out_dir: str | Path, record: dict[str, Any], images: dict[str, tuple[str, str]],
                  videos: dict[str, tuple[str, list[str]]]) -> None:
    """Record the configuration and the owner task(s) of every live input, atomically."""
    out = Path(out_dir)
    data = {"fingerprint": fingerprint(record), "provenance": record,
            "images": {path: list(v) for path, v in images.items()},
            "videos": {path: [sha, list(tasks)] for path, (sha, tasks) in videos.items()}}
    tmp = out / (DATASET + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, out / DATASET)


def owned_sources(out_dir: str | Path) -> dict[str, set[str]] | None:
    """{task_id: sources whose rows it owns} of the latest run; None for a folder without dataset.json."""
    data = read_dataset(out_dir)
    if data is None:
        return None
    owners: dict[str, set[str]] = {}
    for path, (_, task_id) in data["images"].items():
        owners.setdefault(task_id, set()).add(path)
    for path, (_, tasks) in data["videos"].items():
        for task_id in tasks:
            owners.setdefault(task_id, set()).add(path)
    return owners
