"""The batch manifest: one JSON line per finished or failed task, appended as results arrive.

The last line about a task wins. A line cut short by a crash is ignored, so the file stays usable
after `kill -9`; a task counts as finished only when its line says "done", the checksum of its
input still matches and its partition file holds the recorded number of rows.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mien.batch.plan import Task

MANIFEST = "manifest.jsonl"
PARTS = "parts"


def partition_path(out_dir: Path, task_id: str) -> Path:
    return out_dir / PARTS / f"{task_id}.parquet"


class Manifest:
    """Read and append the manifest of an output folder."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST
        self.entries: dict[str, dict[str, Any]] = {}
        self._cut_line = False  # the file ends in the middle of a line (a crash while appending)
        if self.path.exists():
            text = self.path.read_text(encoding="utf-8")
            self._cut_line = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                if isinstance(entry, dict) and "task_id" in entry:
                    self.entries[entry["task_id"]] = entry

    def record(self, entry: dict[str, Any]) -> None:
        """Append one entry and make it durable before going on."""
        entry = {**entry, "recorded_at": round(time.time(), 3)}
        self.entries[entry["task_id"]] = entry
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(("\n" if self._cut_line else "") + json.dumps(entry) + "\n")
            self._cut_line = False
            f.flush()
            os.fsync(f.fileno())

    def is_done(self, task: Task) -> bool:
        """True when `task` finished before on the same input and its partition is intact."""
        entry = self.entries.get(task.task_id)
        return bool(entry) and entry.get("checksum") == task.checksum and self._intact(entry)

    def _intact(self, entry: dict[str, Any]) -> bool:
        if entry.get("status") != "done":
            return False
        path = partition_path(self.out_dir, entry["task_id"])
        if not entry.get("rows"):
            return not path.exists()
        try:
            return pq.ParquetFile(path).metadata.num_rows == entry["rows"]
        except (OSError, ValueError):
            return False

    def done_entries(self) -> list[dict[str, Any]]:
        """Entries of finished tasks whose partition is intact (with its recorded rows), in record order."""
        return [e for e in self.entries.values() if self._intact(e)]

    def done(self) -> list[dict[str, Any]]:
        """Entries of finished tasks whose partition exists (with rows), in task order."""
        return [e for _, e in sorted(self.entries.items()) if e.get("status") == "done" and e.get("rows")
                and partition_path(self.out_dir, e["task_id"]).exists()]
