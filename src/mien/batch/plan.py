"""Turn inputs into tasks: image folders into shards, videos into time chunks, each with a checksum."""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mien.io.images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}


@dataclass(frozen=True)
class Task:
    """One unit of work: a shard of images or a time chunk of one video.

    `task_id` is stable for the same input (paths and range), so a re-run finds its earlier result.
    """

    task_id: str
    kind: str  # "images" or "video"
    paths: tuple[str, ...]
    checksum: str
    start_s: float = 0.0
    end_s: float | None = None
    chunk: int = 0

    def entry(self, **fields) -> dict:
        """This task's manifest entry: what it was (input, range, checksum) plus `fields`."""
        return {"task_id": self.task_id, "kind": self.kind, "paths": list(self.paths), "start_s": self.start_s,
                "end_s": self.end_s, "chunk": self.chunk, "checksum": self.checksum, **fields}

    @property
    def label(self) -> str:
        if self.kind == "video":
            end = "end" if self.end_s is None else f"{self.end_s:g}s"
            return f"{self.paths[0]} [{self.start_s:g}s-{end}]"
        return self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} images)"


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line reason)


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


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


def plan_tasks(inputs: Iterable[str | Path], shard_size: int = 64, chunk_s: float | None = 300.0) -> Plan:
    """Tasks for `inputs`: images in shards of `shard_size` (grouped by folder), videos split into
    chunks of `chunk_s` seconds (None: whole videos). Unreadable videos become problems."""
    from mien.video.reader import VideoError, open_video

    images, videos, problems = expand(inputs)
    plan = Plan(problems=problems)
    by_folder: dict[Path, list[Path]] = {}
    for image in images:
        by_folder.setdefault(image.parent, []).append(image)
    for folder in sorted(by_folder):
        files = by_folder[folder]
        for start in range(0, len(files), shard_size):
            shard = tuple(str(p) for p in files[start:start + shard_size])
            digest = hashlib.sha256()
            for p in shard:
                digest.update(f"{Path(p).name}:{file_sha256(p)}\n".encode())
            plan.tasks.append(Task("img-" + _short_id(*shard), "images", shard, digest.hexdigest()))
    for video in videos:
        try:
            with open_video(video) as reader:
                duration = reader.info.duration_s
        except VideoError as exc:
            plan.problems.append((str(video), str(exc).removeprefix(f"{video}: ")))
            continue
        checksum = file_sha256(video)
        bounds = [(0.0, None)]
        if chunk_s and duration and duration > chunk_s:
            starts = [k * chunk_s for k in range(int(duration // chunk_s) + 1) if k * chunk_s < duration]
            bounds = [(s, starts[i + 1] if i + 1 < len(starts) else None) for i, s in enumerate(starts)]
        for chunk, (start, end) in enumerate(bounds):
            task_id = f"vid-{_short_id(str(video.resolve()))}-{chunk:04d}"
            plan.tasks.append(Task(task_id, "video", (str(video),), f"{checksum}:{start:g}-{end}", start, end, chunk))
    return plan
