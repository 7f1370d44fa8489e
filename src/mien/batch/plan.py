"""Turn inputs into tasks: image folders into shards, videos into time chunks, exactly once per dataset.

A row's identity is (input checksum, frame/time range, options fingerprint, model checksums). The
planner reads what the output folder already holds (`Manifest`): an image whose (path, checksum)
a finished task of this dataset already covers is not planned again, whatever the shard size; a
video's finished time ranges are kept and only the rest of its timeline is chunked. So adding or
removing files, or changing `--shard-size` / `--chunk-s`, redoes only what is new.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mien.io.images import IMAGE_SUFFIXES
from mien.provenance import file_sha256
from mien.wording import counted

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
__all__ = ["Plan", "Scan", "Task", "VIDEO_SUFFIXES", "expand", "file_sha256", "plan_tasks", "scan_inputs"]


@dataclass(frozen=True)
class Task:
    """One unit of work: a shard of images or a time chunk [start_s, end_s) of one video.

    `task_id` is derived from the options fingerprint and the inputs' checksums (and the time
    range), so the same work always has the same id. `members` are (path, SHA-256) of a shard's images.
    """

    task_id: str
    kind: str  # "images" or "video"
    paths: tuple[str, ...]
    checksum: str
    start_s: float = 0.0
    end_s: float | None = None
    chunk: int = 0
    members: tuple[tuple[str, str], ...] = ()

    def entry(self, **fields) -> dict:
        """This task's manifest entry: what it was (input, range, checksum) plus `fields`."""
        return {"task_id": self.task_id, "kind": self.kind, "paths": list(self.paths), "start_s": self.start_s,
                "end_s": self.end_s, "chunk": self.chunk, "checksum": self.checksum,
                "members": [list(m) for m in self.members], **fields}

    @property
    def label(self) -> str:
        if self.kind == "video":
            end = "end" if self.end_s is None else f"{self.end_s:g}s"
            return f"{self.paths[0]} [{self.start_s:g}s-{end}]"
        return self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{counted(len(self.paths) - 1, 'image')})"


@dataclass
class Scan:
    """The inputs of a run with their checksums."""

    images: list[tuple[str, str]] = field(default_factory=list)  # (path, sha256)
    videos: list[tuple[str, str, float | None]] = field(default_factory=list)  # (path, sha256, duration_s)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)  # work to run now
    kept: list[str] = field(default_factory=list)  # finished tasks of this dataset that still hold live rows
    problems: list[tuple[str, str]] = field(default_factory=list)


def _short_id(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:16]


def expand(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """(images, videos, problems) from files, folders (recursive) and globs, in sorted order per input."""
    images, videos, problems = [], [], []
    for raw in inputs:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
        elif not path.exists() and glob.has_magic(text):
            found = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not found:
                problems.append((text, "no files match this pattern"))
        elif not path.exists():
            problems.append((text, "no such file or folder"))
            found = []
        else:
            found = [path]
        for p in found:
            suffix = p.suffix.lower()
            if suffix in VIDEO_SUFFIXES:
                videos.append(p)
            elif suffix in IMAGE_SUFFIXES:
                images.append(p)
            elif not path.is_dir():
                problems.append((str(p), f"not an image or video file name ({suffix or 'no suffix'})"))
    return images, videos, problems


def scan_inputs(inputs: Iterable[str | Path]) -> Scan:
    """Expand the inputs and checksum every file; unreadable videos become problems."""
    from mien.video.reader import VideoError, open_video

    images, videos, problems = expand(inputs)
    scan = Scan(problems=problems)
    seen: set[str] = set()
    for image in images:
        if str(image) not in seen:
            seen.add(str(image))
            scan.images.append((str(image), file_sha256(image)))
    for video in videos:
        if str(video) in seen:
            continue
        seen.add(str(video))
        try:
            with open_video(video) as reader:
                duration = reader.info.duration_s
        except VideoError as exc:
            scan.problems.append((str(video), str(exc).removeprefix(f"{video}: ")))
            continue
        scan.videos.append((str(video), file_sha256(video), duration))
    return scan


def _gaps(done: list[tuple[float, float | None]], duration: float | None) -> list[tuple[float, float | None]]:
    """Parts of [0, end) not covered by the finished ranges (None = to the end)."""
    gaps, cursor = [], 0.0
    for start, end in sorted(done, key=lambda r: r[0]):
        if start > cursor + 1e-6:
            gaps.append((cursor, start))
        if end is None:
            return gaps
        cursor = max(cursor, end)
    if duration is None or cursor < duration - 1e-6:
        gaps.append((cursor, None))
    return gaps


def _chunks(start: float, end: float | None, duration: float | None, chunk_s: float | None) -> list[tuple[float, float | None]]:
    stop = end if end is not None else duration
    if not chunk_s or stop is None or stop - start <= chunk_s:
        return [(start, end)]
    bounds, s = [], start
    while s < stop - 1e-6:
        e = s + chunk_s
        bounds.append((s, e if e < stop - 1e-6 else end))
        s = e
    return bounds


def plan_tasks(scan: Scan, fingerprint: str, done: list[dict], shard_size: int = 64,
               chunk_s: float | None = 300.0) -> Plan:
    """Tasks for what `done` (finished manifest entries of this dataset) does not already cover."""
    plan = Plan(problems=list(scan.problems))
    covered: dict[tuple[str, str], str] = {}
    ranges: dict[str, list[tuple[float, float | None, str]]] = {}
    for entry in done:
        if entry.get("kind") == "images":
            for path, sha in entry.get("members", []):
                covered.setdefault((path, sha), entry["task_id"])
        elif entry.get("kind") == "video":
            ranges.setdefault(entry["checksum"], []).append((entry["start_s"], entry["end_s"], entry["task_id"]))
    kept: set[str] = set()
    by_folder: dict[str, list[tuple[str, str]]] = {}
    for path, sha in scan.images:
        if (path, sha) in covered:
            kept.add(covered[(path, sha)])
        else:
            by_folder.setdefault(str(Path(path).parent), []).append((path, sha))
    for folder in sorted(by_folder):
        files = by_folder[folder]
        for start in range(0, len(files), shard_size):
            members = tuple(files[start:start + shard_size])
            digest = hashlib.sha256()
            for path, sha in members:
                digest.update(f"{Path(path).name}:{sha}\n".encode())
            task_id = "img-" + _short_id(fingerprint, *(f"{p}:{s}" for p, s in members))
            plan.tasks.append(Task(task_id, "images", tuple(p for p, _ in members), digest.hexdigest(),
                                   members=members))
    for video, sha, duration in scan.videos:
        finished = ranges.get(sha, [])
        kept.update(task_id for _, _, task_id in finished)
        bounds = [b for gap in _gaps([(s, e) for s, e, _ in finished], duration)
                  for b in _chunks(gap[0], gap[1], duration, chunk_s)]
        for start, end in bounds:
            task_id = f"vid-{_short_id(fingerprint, sha, f'{start:.6f}', str(end))}"
            chunk = int(round(start / chunk_s)) if chunk_s else 0
            plan.tasks.append(Task(task_id, "video", (video,), sha, start, end, chunk))
    plan.kept = sorted(kept)
    return plan
