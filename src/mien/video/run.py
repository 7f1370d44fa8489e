"""Run the video pipeline from a source to files: rows streamed to a table, an annotated video,
timelines (segments, events, per-track summary), with progress, live display and fps reporting.
Used by `mien video` and `mien live`.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mien.expression.rules import RuleSet
from mien.io.table import read_table
from mien.io.writer import TableWriter
from mien.provenance import file_sha256, models_used, options_dict, provenance
from mien.report.annotate import annotate_frame
from mien.video.analyzer import VideoAnalyzer, VideoOptions
from mien.video.reader import VideoReader
from mien.video.timeline import events, expression_segments, timeline_columns, track_summary


_ROWS_BATCH = 32  # frames turned into table rows at a time


@dataclass
class VideoRun:
    """What a run did: frames processed, rows written, speed, files written, warnings."""

    frames: int = 0
    rows: int = 0
    seconds: float = 0.0
    tracks: set[int] = field(default_factory=set)
    outputs: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    truncated: bool = False  # the input file ended before its stated frame count

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def timeline_paths(output: Path) -> dict[str, Path]:
    """Where the timeline tables of a run writing `output` go (next to it)."""
    stem = output.with_suffix("")
    return {name: stem.with_name(f"{stem.name}.{name}.csv") for name in ("segments", "events", "tracks")}


def analyze_video(reader: VideoReader, output: Path | None, options: VideoOptions | None = None,
                  fmt: str = "auto", landmarks: str = "none", annotate: Path | None = None,
                  timelines: bool = True, display: bool = False, console: Console | None = None,
                  report_fps_every_s: float | None = None, flush_s: float = 10.0,
                  max_seconds: float | None = None, on_frame: Callable[[int], None] | None = None,
                  video: VideoAnalyzer | None = None, quiet: bool = False, rules: RuleSet | None = None) -> VideoRun:
    """Analyse every sampled frame of `reader`; write rows to `output` as they come.

    Ctrl-C (or closing the display window, or `max_seconds` of wall time) ends the run early
    with everything so far written. `video` reuses loaded models (it is left open; `options`
    is then ignored); `quiet` hides the progress bar; `rules` adds custom-expression columns
    (`mien.expression.rules`). Returns a `VideoRun`.
    """
    console = console or Console(stderr=True)
    options = options or VideoOptions()
    run = VideoRun()
    smoothed = options.smoothing is not None
    writer = None
    if output is not None:
        attributes = video.options.analyzer.attributes if video is not None else options.analyzer.attributes
        writer = TableWriter(output, fmt, landmarks=landmarks, smoothed=smoothed, attributes=attributes,
                             provenance=video_provenance(reader, video.options if video is not None else options,
                                                         landmarks, rules),
                             flush_s=flush_s, rules=rules)
    recorder = None
    pending: list = []
    total = _expected_frames(reader)
    started = last_report = time.perf_counter()
    frames_at_report = 0
    try:
        with (nullcontext(video) if video is not None else VideoAnalyzer(options)) as video, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[speed]}"), console=console, transient=True,
            disable=quiet or display or total is None,
        ) as progress:
            task = progress.add_task("frames", total=total, speed="")
            started = last_report = time.perf_counter()  # models loaded: time the frames only
            for frame, faces in video.run(reader, reader.info.source):
                run.frames += 1
                run.tracks.update(int(t) for t in faces.track_ids)
                if writer is not None:
                    pending.append(faces)
                    if len(pending) >= _ROWS_BATCH:  # one DataFrame per batch: ~50x cheaper than per frame
                        run.rows += _write(writer, pending, landmarks, smoothed)
                if annotate is not None or display:
                    drawn = annotate_frame(frame.rgb, faces)
                    if annotate is not None:
                        recorder = recorder or _recorder(annotate, reader, drawn.shape)
                        recorder.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                    if display and not _show(drawn):
                        run.interrupted = True
                        break
                now = time.perf_counter()
                progress.update(task, advance=1, speed=f"{run.frames / max(now - started, 1e-9):.1f} fps")
                if report_fps_every_s and now - last_report >= report_fps_every_s:
                    console.print(f"{(run.frames - frames_at_report) / (now - last_report):.1f} fps, "
                                  f"{len(faces)} faces", highlight=False)
                    last_report, frames_at_report = now, run.frames
                if on_frame is not None:
                    on_frame(run.frames)
                if max_seconds is not None and now - started >= max_seconds:
                    break
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        if writer is not None:
            run.rows += _write(writer, pending, landmarks, smoothed)
            writer.close()
        run.seconds = time.perf_counter() - started
        if recorder is not None:
            recorder.release()
        if display:
            cv2.destroyAllWindows()
    run.warnings += reader.warnings
    run.truncated = reader.truncated
    _return_freed_memory()  # the models are closed; the timelines should not stack on their heap
    if output is not None and run.rows:
        run.outputs.append(output)
        if timelines:
            run.outputs += write_timelines(output, smoothed)
    if annotate is not None and recorder is not None:
        run.outputs.append(annotate)
    return run


def _write(writer: TableWriter, pending: list, landmarks: str, smoothed: bool) -> int:
    if not pending:
        return 0
    rows = writer.write_faces(pending)
    pending.clear()
    return rows


def video_provenance(reader: VideoReader, options: VideoOptions, landmarks: str, rules: RuleSet | None = None) -> dict:
    """The provenance record of a video table: options, sampling, models and the file's checksum."""
    info = reader.info
    inputs = []
    if info.kind == "file":
        inputs.append({"source": info.source, "sha256": file_sha256(info.source)})
    sampling = {"every": reader.every, "fps": reader.fps, "start_s": reader.start_s, "end_s": reader.end_s}
    custom = {} if rules is None else {"expressions": rules.provenance()}
    return provenance("video", {**options_dict(options), "landmarks": landmarks, "sampling": sampling, **custom},
                      models_used(options.analyzer.expression, options.analyzer.attributes,
                                  centerface=options.analyzer.mode == "thorough"), inputs)  # video "auto": BlazeFace


def write_timelines(output: Path, smoothed: bool = True) -> list[Path]:
    """Expression segments, AU/expression events and the per-track summary of a written video table."""
    table = _read_columns(output, timeline_columns(smoothed))
    paths = timeline_paths(output)
    expression_segments(table).to_csv(paths["segments"], index=False)
    events(table).to_csv(paths["events"], index=False)
    track_summary(table).to_csv(paths["tracks"], index=False)
    return list(paths.values())


def _read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        # In batches, labels as categories (an hour of video has ~100k copies of a handful of strings),
        # and Arrow's pool emptied after: reading the whole file at once held ~4x the table's size.
        import pyarrow as pa

        batches = pq.ParquetFile(path).iter_batches(columns=columns, batch_size=20_000)
        table = pd.concat([b.to_pandas(strings_to_categorical=True) for b in batches], ignore_index=True)
        pa.default_memory_pool().release_unused()
        return table
    table = read_table(path)
    return table[[c for c in columns if c in table.columns]]


def _return_freed_memory() -> None:
    """Hand memory freed by the closed models back to the OS (glibc keeps it otherwise: ~70 MB)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _expected_frames(reader: VideoReader) -> int | None:
    info = reader.info
    if info.frame_count is None:
        return None
    start = int(reader.start_s * info.fps)
    stop = info.frame_count if reader.end_s is None else min(info.frame_count, int(reader.end_s * info.fps))
    span = max(stop - start, 0)
    if reader.fps is not None:
        return int(span / info.fps * min(reader.fps, info.fps)) + 1
    return (span + reader.every - 1) // reader.every


def _recorder(path: Path, reader: VideoReader, shape) -> cv2.VideoWriter:
    info = reader.info
    fps = min(reader.fps, info.fps) if reader.fps else info.fps / reader.every
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise OSError(f"{path}: cannot write video (use .mp4 or .avi)")
    return writer


def _show(rgb) -> bool:
    """Show a frame; False when the user pressed q or Esc."""
    try:
        cv2.imshow("mien live (q to quit)", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error as exc:
        raise OSError("cannot open a window: mien installs OpenCV without its GUI (opencv-contrib-python-headless); "
                      "for a window run `pip uninstall -y opencv-contrib-python-headless && pip install "
                      "opencv-contrib-python`, or use "
                      f"--no-window with --record or --output ({exc.err})") from None
    return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)
