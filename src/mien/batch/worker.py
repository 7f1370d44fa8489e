"""What runs on a worker: one task in, one Parquet partition out (written under a temporary name,
then renamed, so a partition is either complete or absent). Models load once per worker process."""

from __future__ import annotations

import os
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mien.batch.manifest import PARTS, partition_path
from mien.batch.plan import Task

TMP = ".tmp"


@dataclass(frozen=True)
class BatchOptions:
    """Pipeline options shared by all tasks of a batch (validated: a bad value raises `OptionsError`)."""

    mode: str = "auto"
    every: int = 1
    landmarks: str = "none"
    smooth: bool = True
    attributes: bool = False
    prior: str = "natural"
    threads: int | None = None  # per worker; the runner sets 1 when workers fill the cores
    expressions: str | None = None  # a custom-expressions rules file's text (travels to every worker)

    def __post_init__(self) -> None:
        from mien.options import LANDMARK_COLUMNS, check_choice, check_range

        check_range("every", self.every, 1, integer=True)
        check_choice("landmarks", self.landmarks, LANDMARK_COLUMNS)
        self.analyzer_options()
        self.rules()

    def rules(self):
        """The custom expressions (`mien.expression.rules.RuleSet`), or None."""
        if self.expressions is None:
            return None
        from mien.expression.rules import parse_rules

        return parse_rules(self.expressions, "--expressions")

    def analyzer_options(self):
        """The image pipeline's options (`mien.options.analyzer_options`)."""
        from mien.options import analyzer_options

        return analyzer_options(mode=self.mode, attributes=self.attributes, prior=self.prior, threads=self.threads)

    def video_options(self):
        """The video pipeline's options (`mien.options.video_options`)."""
        from mien.options import video_options

        return video_options(smooth=self.smooth, mode=self.mode, attributes=self.attributes, prior=self.prior,
                             threads=self.threads)


def batch_provenance(options: BatchOptions) -> dict[str, Any]:
    """The configuration record of a batch dataset (what decides its numbers; threads do not)."""
    from mien.provenance import models_used, options_dict, provenance

    analysis = {k: v for k, v in options_dict(options.analyzer_options()).items() if k != "threads"}
    settings = {k: v for k, v in options_dict(options).items() if k in ("every", "landmarks", "smooth")}
    return provenance("batch", {**settings, "analyzer": analysis},
                      models_used(True, options.attributes, centerface=options.analyzer_options().mode != "fast"))


class BatchWorker:
    """Holds the loaded models of one worker and runs tasks with them."""

    def __init__(self, options: BatchOptions) -> None:
        self.options = options
        self._analyzer = None
        self._video = None
        self.name = f"{os.uname().nodename}:{os.getpid()}"

    def analyzer(self):
        if self._analyzer is None:
            from mien.analyzer import Analyzer

            self._analyzer = Analyzer(self.options.analyzer_options())
        return self._analyzer

    def video(self):
        from mien.video.analyzer import VideoAnalyzer

        if self._video is None:
            self._video = VideoAnalyzer(self.options.video_options())
        else:
            self._video.reset()  # a new chunk: fresh tracks, same models
        return self._video

    def run(self, task: Task, out_dir: str) -> dict[str, Any]:
        """Run one task; returns its manifest entry. Bad input gives a "failed" entry (permanent);
        anything else raises, and the caller may retry."""
        out = Path(out_dir)
        began = time.perf_counter()
        tmp = out / PARTS / TMP / f"{task.task_id}-{uuid.uuid4().hex[:8]}.parquet"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        entry = task.entry(worker=self.name)
        try:
            if task.kind == "images":
                rows, errors = self._images(task, tmp)
            else:
                rows, errors = self._video_chunk(task, tmp)
        except _InputError as exc:
            tmp.unlink(missing_ok=True)
            return {**entry, "status": "failed", "rows": 0, "errors": [], "error": str(exc),
                    "seconds": round(time.perf_counter() - began, 3)}
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        target = partition_path(out, task.task_id)
        if rows:
            os.replace(tmp, target)  # atomic: readers never see half a partition
        else:
            tmp.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
        return {**entry, "status": "done", "rows": rows, "errors": errors, "error": None,
                "seconds": round(time.perf_counter() - began, 3)}

    def _images(self, task: Task, tmp: Path) -> tuple[int, list[str]]:
        from mien.io.images import ImageError
        from mien.io.writer import TableWriter

        frames, errors = [], []
        analyzer = self.analyzer()
        for path in task.paths:
            try:
                frames.append(analyzer.analyze(path))
            except ImageError as exc:
                errors.append(f"{path}: {exc}")
        if not frames:
            if errors:
                raise _InputError("; ".join(errors))
            return 0, errors
        record = {**batch_provenance(self.options), "inputs": [{"source": p, "sha256": s} for p, s in task.members]}
        with TableWriter(tmp, landmarks=self.options.landmarks, attributes=self.options.attributes,
                         provenance=record, flush_rows=10**9, flush_s=1e9, rules=self.options.rules()) as writer:
            rows = writer.write_faces(frames)
        return rows, errors

    def _video_chunk(self, task: Task, tmp: Path) -> tuple[int, list[str]]:
        from mien.video.reader import VideoError, open_video
        from mien.video.run import analyze_video

        try:
            reader = open_video(task.paths[0], every=self.options.every, start_s=task.start_s, end_s=task.end_s)
        except VideoError as exc:
            raise _InputError(str(exc)) from None
        with reader:
            run = analyze_video(reader, tmp, video=self.video(), landmarks=self.options.landmarks,
                                timelines=False, quiet=True, rules=self.options.rules())
        return run.rows, list(run.warnings)

    def close(self) -> None:
        for model in (self._analyzer, self._video):
            if model is not None:
                model.close()


class _InputError(Exception):
    """The task's input cannot be analysed: retrying will not help."""


_process_worker: BatchWorker | None = None


def init_process(options: BatchOptions) -> None:
    """Process-pool initializer: load nothing yet, just remember the options; on Linux, also ask the
    kernel to end this worker when the driver dies (a `kill -9`ed driver leaves no workers behind)."""
    global _process_worker
    _die_with_parent()
    _process_worker = BatchWorker(options)


def _die_with_parent() -> None:
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_in_process(task: Task, out_dir: str) -> dict[str, Any]:
    assert _process_worker is not None, "init_process was not called"
    try:
        return _process_worker.run(task, out_dir)
    except Exception as exc:  # pass a plain description back: the exception may not pickle
        raise RuntimeError(f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}") from None
