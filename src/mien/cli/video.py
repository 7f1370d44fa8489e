"""`mien video` and `mien live`: videos, image sequences, cameras and streams."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from mien.cli.common import (ATTRIBUTES_HELP, EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, EXPRESSIONS_HELP, MODE_HELP,
                             PRIOR_HELP, SAMPLING_HELP, app, check_choice, cli_video_options, console, errors,
                             load_rules_or_exit)
from mien.options import LANDMARK_COLUMNS, VIDEO_LANDMARKS
from mien.face.settings import DEFAULT_MIN_SCORE
from mien.wording import counted


def _open_source(source: str, every: int, fps: Optional[float], start: float, end: Optional[float],
                 input_fps: Optional[float]):
    from mien.video.reader import VideoError, open_video

    try:
        return open_video(source, every=every, fps=fps, start_s=start, end_s=end, input_fps=input_fps)
    except (VideoError, ValueError) as exc:
        errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_FAILED_INPUTS)

def _finish_video(run, source: str, output: Optional[Path]) -> int:
    for line in run.warnings:
        errors.print(f"warning: {line}", soft_wrap=True, highlight=False)
    tracks = len([t for t in run.tracks if t >= 0])
    console.print(f"{source}: {counted(run.frames, 'frame')} in {run.seconds:.1f} s ({run.fps:.1f} fps), "
                  f"{counted(tracks, 'track')}" + (f", {counted(run.rows, 'row')}" if output is not None else ""),
                  soft_wrap=True, highlight=False)
    for path in run.outputs:
        console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    if run.interrupted:
        errors.print("mien: interrupted; rows up to the interruption were written", soft_wrap=True)
        return EXIT_FAILED_INPUTS
    if run.frames == 0:
        errors.print(f"error: {source}: no frames in the chosen range", soft_wrap=True, highlight=False)
        return EXIT_FAILED_INPUTS
    return EXIT_FAILED_INPUTS if run.truncated else EXIT_OK

@app.command()
def video(
    source: str = typer.Argument(..., help="Video file, folder or glob of images (a sequence), webcam index (0) or stream URL."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Table to write, streamed as it goes: .parquet, .csv or .jsonl."),
    fmt: str = typer.Option("auto", "--format", "-f", help="auto (from suffix), parquet, csv, jsonl, or openface."),
    annotate: Optional[Path] = typer.Option(None, "--annotate", help="Write an annotated video (.mp4): boxes, ids, expression, AU bars."),
    every: int = typer.Option(1, min=1, help=SAMPLING_HELP["every"]),
    fps: Optional[float] = typer.Option(None, min=0.001, help=SAMPLING_HELP["fps"]),
    start: float = typer.Option(0.0, min=0.0, help=SAMPLING_HELP["start"]),
    end: Optional[float] = typer.Option(None, min=0.0, help=SAMPLING_HELP["end"]),
    input_fps: Optional[float] = typer.Option(None, min=0.001, help=SAMPLING_HELP["input_fps"]),
    detect_every: int = typer.Option(10, help=SAMPLING_HELP["detect_every"]),
    smooth: bool = typer.Option(True, help="Add per-track smoothed columns (*_smooth); raw values are always kept."),
    timelines: bool = typer.Option(True, help="Also write <output>.segments.csv, .events.csv and .tracks.csv."),
    mode: str = typer.Option("auto", "--mode", "-m", help=MODE_HELP),
    max_faces: Optional[int] = typer.Option(None, help="Keep at most this many faces per frame."),
    min_face_size: int = typer.Option(0, help="Ignore faces smaller than this many pixels."),
    min_score: float = typer.Option(DEFAULT_MIN_SCORE, help="Minimum detector confidence (0-1); rows also need a face mesh in the box."),
    landmarks: str = typer.Option(VIDEO_LANDMARKS, help="Landmark columns: none, 2d or 3d (956 or 1434 columns per row)."),
    prior: str = typer.Option("natural", help=PRIOR_HELP),
    attributes: bool = typer.Option(False, "--attributes", help=ATTRIBUTES_HELP),
    flush_s: float = typer.Option(10.0, min=0.05, help="Write rows to disk at least this often (seconds); a killed run "
                                  "keeps them in OUTPUT.parts/ (Parquet) or in OUTPUT (CSV, JSON Lines)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or source line; warnings and errors still print."),
    expressions: Optional[Path] = typer.Option(None, "--expressions", help=EXPRESSIONS_HELP),
    calibrate: Optional[str] = typer.Option(None, "--calibrate", help="Per-track neutral calibration once the video "
                                            "is read: each track's rest is its rows in START-END seconds (0-5s), or "
                                            "auto: its most neutral two seconds. Adds the *_cal columns (README, "
                                            "'Per-person calibration')."),
) -> None:
    """Analyse a video: one row per face per frame.

    Rows carry track ids and smoothed values; timelines and events are written beside the table."""
    from mien.cli.calibrate import calibrate_written
    from mien.expression.neutral import parse_window
    from mien.io.table import resolve_format
    from mien.video.run import analyze_video

    check_choice("--landmarks", landmarks, LANDMARK_COLUMNS)
    options = cli_video_options(mode=mode, max_faces=max_faces, min_face_size=min_face_size, min_score=min_score,
                                prior=prior, attributes=attributes, detect_every=detect_every, smooth=smooth)
    rules = load_rules_or_exit(expressions)
    if output is None and annotate is None:
        raise typer.BadParameter("give --output and/or --annotate", param_hint="--output")
    if calibrate is not None:
        if output is None:
            raise typer.BadParameter("--calibrate needs --output", param_hint="--calibrate")
        if fmt == "openface":
            raise typer.BadParameter("--calibrate needs a mien table (.parquet, .csv or .jsonl), not OpenFace's "
                                     "columns", param_hint="--calibrate")
        try:
            parse_window(calibrate)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--calibrate")
    if output is not None:
        try:
            resolve_format(output, fmt)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--output")
    reader = _open_source(source, every, fps, start, end, input_fps)
    info = reader.info
    if not quiet:
        errors.print(f"{source}: {info.kind}, {info.width}x{info.height}, {info.fps:.2f} fps"
                     + (" (assumed; none in the source)" if info.fps_assumed else "")
                     + (f", {counted(info.frame_count, 'frame')}, {info.duration_s:.1f} s" if info.frame_count else ""),
                     soft_wrap=True, highlight=False)
    with reader:
        try:
            run = analyze_video(reader, output, options, fmt=fmt, landmarks=landmarks, annotate=annotate,
                                timelines=timelines and output is not None, console=errors, flush_s=flush_s,
                                quiet=quiet, rules=rules)
        except OSError as exc:
            errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_FAILED_INPUTS)
    code = _finish_video(run, source, output)
    if calibrate is not None and output is not None and run.rows:
        code = max(code, calibrate_written(output, window=calibrate)[0])
    raise typer.Exit(code)


@app.command()
def live(
    source: str = typer.Argument("0", help="Webcam index (default 0), stream URL, or a video file to replay."),
    record: Optional[Path] = typer.Option(None, "--record", help="Also write the annotated frames to this video (.mp4)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also stream the rows to this table."),
    window: bool = typer.Option(True, help="Show the annotated frames in a window (q or Esc quits)."),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="Stop after this many seconds."),
    detect_every: int = typer.Option(10, help=SAMPLING_HELP["detect_every"]),
    mode: str = typer.Option("auto", "--mode", "-m", help=MODE_HELP),
    prior: str = typer.Option("natural", help=PRIOR_HELP),
) -> None:
    """Analyse a webcam or stream live, results drawn on the frames.

    Prints the frame rate every second; can record the overlaid video and the table."""
    import os

    from mien.video.run import analyze_video

    if window and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux"):
        errors.print("error: no display to show a window on; use --no-window (with --record or --output)", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    options = cli_video_options(mode=mode, prior=prior, detect_every=detect_every)
    reader = _open_source(source, 1, None, 0.0, None, None)
    with reader:
        try:
            run = analyze_video(reader, output, options, annotate=record, display=window, console=errors,
                                report_fps_every_s=1.0, max_seconds=seconds, timelines=False)
        except OSError as exc:
            errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(_finish_video(run, source, output))
