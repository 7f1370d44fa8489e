"""The `mien` command line. Run `mien --help`, or `mien COMMAND --help`.

Exit codes: 0 every input succeeded; 1 at least one input failed (the others were processed
and their rows written); 2 bad usage or nothing to do.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mien.expression.classes import PRIORS
from mien.face.detect import DEFAULT_MIN_SCORE

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="mien: offline facial expression analysis (faces, mesh, pose, blendshapes, AUs, expressions).")
console = Console()
errors = Console(stderr=True)

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE = 0, 1, 2


def _summary(frame, limit: int = 20) -> Table:
    from mien.expression.aus import AU_NAMES

    table = Table(title="faces", show_lines=False)
    attributes = "apparent_age" in frame.columns
    for col in ("source", "face", "score", "box x,y,w,h", "yaw/pitch/roll", "expression", "valence/arousal",
                "top AUs", "top blendshapes", "flags") + (("apparent age, gender pres.",) if attributes else ()):
        table.add_column(col, overflow="fold")
    bs_cols = [c for c in frame.columns if c.startswith("bs_") and c != "bs_neutral"]
    for _, row in frame.head(limit).iterrows():
        name = Path(str(row["source"])).name
        if not row["face_found"]:
            table.add_row(name, "-", "", "", "", "no face found", "", "", "", "", *([""] if attributes else []))
            continue
        aus = sorted(AU_NAMES, key=lambda a: -row[a])[:2]
        shapes = sorted(bs_cols, key=lambda c: -row[c])[:2]
        flags = [c[5:] for c in frame.columns if c.startswith("flag_") and row[c]]
        table.add_row(
            name, str(row["face_id"]), f"{row['box_score']:.2f}",
            f"{row['box_x']:.0f},{row['box_y']:.0f},{row['box_w']:.0f},{row['box_h']:.0f}",
            f"{row['pose_yaw']:+.0f}/{row['pose_pitch']:+.0f}/{row['pose_roll']:+.0f}",
            f"{row['expression']} {row['expression_confidence']:.2f}" if isinstance(row["expression"], str) else "-",
            f"{row['valence']:+.2f}/{row['arousal']:+.2f}",
            "\n".join(f"{a} {row[a]:.2f}" for a in aus),
            "\n".join(f"{c[3:]} {row[c]:.2f}" for c in shapes),
            ",".join(flags),
            *([f"{row['apparent_age']:.0f} ({row['apparent_age_low']:.0f}-{row['apparent_age_high']:.0f}), "
               f"{row['gender_presentation']} {max(row['gender_presentation_p_female'], 1 - row['gender_presentation_p_female']):.2f}"
               if isinstance(row["gender_presentation"], str) else "-"] if attributes else []),
        )
    if len(frame) > limit:
        table.caption = f"first {limit} of {len(frame)} rows"
    return table


_ATTRIBUTES_HELP = ("Also estimate apparent age (with an 80% interval) and gender presentation (columns apparent_age*, "
                    "gender_presentation*); see `mien card age` and `mien card gender` for their errors per group.")


def _annotated_path(directory: Path, source: Path, used: set[str]) -> Path:
    stem = source.stem
    name, k = f"{stem}_annotated.jpg", 1
    while name in used:
        k += 1
        name = f"{stem}_{k}_annotated.jpg"
    used.add(name)
    return directory / name


def run_analysis(paths: List[str], output: Optional[Path], fmt: str, mode: str, max_faces: Optional[int],
                 min_face_size: int, min_score: float, landmarks: str, annotate_dir: Optional[Path],
                 show_table: bool = True, require_mesh: bool = True, prior: str = "natural",
                 attributes: bool = False) -> int:
    """Shared by `analyze` and `demo`; returns the exit code."""
    import pandas as pd

    from mien.analyzer import AnalyzerOptions
    from mien.images_run import ParallelAnalyzer, default_pipelines
    from mien.io.images import ImageError, expand_inputs
    from mien.io.table import faces_to_frame, resolve_format
    from mien.io.writer import TableWriteError, TableWriter
    from mien.provenance import analysis_provenance, file_sha256
    from mien.report.annotate import annotate, save_rgb

    inputs = list(expand_inputs(paths))
    if not inputs:
        errors.print("mien: no inputs given")
        return EXIT_USAGE
    if output is not None:
        try:
            resolve_format(output, fmt)  # fail before any work on a bad suffix
        except ValueError as exc:
            errors.print(f"mien: {exc}")
            return EXIT_USAGE
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    options = AnalyzerOptions(mode=mode, max_faces=max_faces, min_face_size=min_face_size, min_score=min_score,
                              require_mesh=require_mesh, expression_prior=prior, attributes=attributes)
    record = analysis_provenance("images", options, landmarks=landmarks)
    checksums: list[dict[str, str]] = []
    failed, shown, used_names = 0, [], set()
    writer = None
    try:
        if output is not None:
            writer = TableWriter(output, fmt, landmarks=landmarks, attributes=attributes, provenance=record)
        with ParallelAnalyzer(options, default_pipelines(len(inputs))) as analyzer, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=errors, transient=True, disable=len(inputs) < 2,
        ) as progress:
            task = progress.add_task("analysing", total=len(inputs))
            for path, loaded, faces in analyzer.run(inputs):
                if isinstance(faces, ImageError):
                    failed += 1
                    progress.console.print(f"[red]error[/red] {path}: {faces}", highlight=False, soft_wrap=True)
                    progress.advance(task)
                    continue
                checksums.append({"source": str(path), "sha256": file_sha256(path)})
                if writer is not None:
                    writer.write_faces([faces])
                if annotate_dir is not None:
                    save_rgb(_annotated_path(annotate_dir, Path(path), used_names), annotate(loaded.rgb, faces))
                if show_table and sum(len(f) for f in shown) < 50:
                    shown.append(faces_to_frame([faces], landmarks="none"))
                progress.advance(task)
        if writer is not None:
            writer.set_provenance({**record, "inputs": checksums})
            writer.close()
    except TableWriteError as exc:
        errors.print(f"error: {exc}; rows written before it are kept", soft_wrap=True, highlight=False, markup=False)
        return EXIT_FAILED_INPUTS
    finally:
        if writer is not None:
            try:
                writer.close()
            except TableWriteError:
                pass
    if show_table and shown:
        console.print(_summary(pd.concat(shown, ignore_index=True)))
    ok = len(inputs) - failed
    if output is not None:
        console.print(f"wrote {writer.rows} rows for {ok} of {len(inputs)} inputs to {output}", soft_wrap=True)
    if failed:
        errors.print(f"mien: {failed} of {len(inputs)} inputs failed", soft_wrap=True)
        return EXIT_FAILED_INPUTS
    return EXIT_OK


_MODE_HELP = "Detector: fast (one pass, large faces), thorough (tile pyramid, groups/crowds), auto."
_PRIOR_HELP = ("Expression class prior: natural (everyday frequencies, mostly neutral and happy; most accurate on "
               "ordinary photos) or balanced (every class equally likely; finds more fear, disgust, contempt, anger).")


@app.command()
def analyze(
    paths: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) or glob patterns."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Table to write: .parquet, .csv or .jsonl."),
    fmt: str = typer.Option("auto", "--format", "-f", help="auto (from suffix), parquet, csv, jsonl, or openface (OpenFace 2 column names)."),
    mode: str = typer.Option("auto", "--mode", "-m", help=_MODE_HELP),
    max_faces: Optional[int] = typer.Option(None, help="Keep at most this many faces per image."),
    min_face_size: int = typer.Option(0, help="Ignore faces smaller than this many pixels."),
    min_score: float = typer.Option(DEFAULT_MIN_SCORE, help="Minimum detector confidence (0-1); rows also need a face mesh in the box."),
    landmarks: str = typer.Option("2d", help="Landmark columns: none, 2d or 3d."),
    annotate_dir: Optional[Path] = typer.Option(None, "--annotate", help="Folder for annotated copies of the images."),
    keep_unconfirmed: bool = typer.Option(False, help="Keep detections the mesh model does not confirm (more small faces, more false positives; flagged no_mesh)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary table."),
    prior: str = typer.Option("natural", help=_PRIOR_HELP),
    attributes: bool = typer.Option(False, "--attributes", help=_ATTRIBUTES_HELP),
) -> None:
    """Analyse images: one table row per face (box, pose, gaze, AUs, blendshapes, flags, landmarks)."""
    _check_choice("--prior", prior, PRIORS)
    _check_choice("--format", fmt, ("auto", "parquet", "csv", "jsonl", "openface"))
    _check_choice("--mode", mode, ("fast", "thorough", "auto"))
    _check_choice("--landmarks", landmarks, ("none", "2d", "3d"))
    code = run_analysis(paths, output, fmt, mode, max_faces, min_face_size, min_score, landmarks,
                        annotate_dir, show_table=not quiet, require_mesh=not keep_unconfirmed, prior=prior,
                        attributes=attributes)
    raise typer.Exit(code)


_SAMPLING_HELP = {
    "every": "Analyse every Nth frame.",
    "fps": "Analyse about this many frames per second instead of every frame.",
    "start": "Start time in seconds.",
    "end": "End time in seconds (default: to the end).",
    "input_fps": "Frame rate of an image sequence, or an override for a file whose frame rate is missing or wrong.",
    "detect_every": "Run the face detector every K analysed frames; in between, faces are followed by the mesh.",
}


def _video_options(mode: str, max_faces: Optional[int], min_face_size: int, min_score: float, prior: str,
                   detect_every: int, smooth: bool, attributes: bool = False):
    from mien.analyzer import AnalyzerOptions
    from mien.video.analyzer import VideoOptions
    from mien.video.smoothing import SmoothingOptions

    _check_choice("--mode", mode, ("fast", "thorough", "auto"))
    _check_choice("--prior", prior, PRIORS)
    if detect_every < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--detect-every")
    analyzer = AnalyzerOptions(mode=mode, max_faces=max_faces, min_face_size=min_face_size, min_score=min_score,
                               expression_prior=prior, attributes=attributes)
    return VideoOptions(analyzer=analyzer, detect_every=detect_every, smoothing=SmoothingOptions() if smooth else None)


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
    console.print(f"{source}: {run.frames} frames in {run.seconds:.1f} s ({run.fps:.1f} fps), {tracks} tracks"
                  + (f", {run.rows} rows" if output is not None else ""), soft_wrap=True, highlight=False)
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
    every: int = typer.Option(1, min=1, help=_SAMPLING_HELP["every"]),
    fps: Optional[float] = typer.Option(None, min=0.001, help=_SAMPLING_HELP["fps"]),
    start: float = typer.Option(0.0, min=0.0, help=_SAMPLING_HELP["start"]),
    end: Optional[float] = typer.Option(None, min=0.0, help=_SAMPLING_HELP["end"]),
    input_fps: Optional[float] = typer.Option(None, min=0.001, help=_SAMPLING_HELP["input_fps"]),
    detect_every: int = typer.Option(10, help=_SAMPLING_HELP["detect_every"]),
    smooth: bool = typer.Option(True, help="Add per-track smoothed columns (*_smooth); raw values are always kept."),
    timelines: bool = typer.Option(True, help="Also write <output>.segments.csv, .events.csv and .tracks.csv."),
    mode: str = typer.Option("auto", "--mode", "-m", help=_MODE_HELP),
    max_faces: Optional[int] = typer.Option(None, help="Keep at most this many faces per frame."),
    min_face_size: int = typer.Option(0, help="Ignore faces smaller than this many pixels."),
    min_score: float = typer.Option(DEFAULT_MIN_SCORE, help="Minimum detector confidence (0-1); rows also need a face mesh in the box."),
    landmarks: str = typer.Option("none", help="Landmark columns: none, 2d or 3d (956 or 1434 columns per row)."),
    prior: str = typer.Option("natural", help=_PRIOR_HELP),
    attributes: bool = typer.Option(False, "--attributes", help=_ATTRIBUTES_HELP),
    flush_s: float = typer.Option(10.0, min=0.05, help="Write rows to disk at least this often (seconds); a killed run "
                                  "keeps them in OUTPUT.parts/ (Parquet) or in OUTPUT (CSV, JSON Lines)."),
) -> None:
    """Analyse a video: one row per face per frame with track ids, smoothed values, timelines and events."""
    from mien.io.table import resolve_format
    from mien.video.run import analyze_video

    _check_choice("--landmarks", landmarks, ("none", "2d", "3d"))
    options = _video_options(mode, max_faces, min_face_size, min_score, prior, detect_every, smooth, attributes)
    if output is None and annotate is None:
        raise typer.BadParameter("give --output and/or --annotate", param_hint="--output")
    if output is not None:
        try:
            resolve_format(output, fmt)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--output")
    reader = _open_source(source, every, fps, start, end, input_fps)
    info = reader.info
    errors.print(f"{source}: {info.kind}, {info.width}x{info.height}, {info.fps:.2f} fps"
                 + (" (assumed; none in the source)" if info.fps_assumed else "")
                 + (f", {info.frame_count} frames, {info.duration_s:.1f} s" if info.frame_count else ""),
                 soft_wrap=True, highlight=False)
    with reader:
        try:
            run = analyze_video(reader, output, options, fmt=fmt, landmarks=landmarks, annotate=annotate,
                                timelines=timelines and output is not None, console=errors, flush_s=flush_s)
        except OSError as exc:
            errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_FAILED_INPUTS)
    raise typer.Exit(_finish_video(run, source, output))


@app.command()
def live(
    source: str = typer.Argument("0", help="Webcam index (default 0), stream URL, or a video file to replay."),
    record: Optional[Path] = typer.Option(None, "--record", help="Also write the annotated frames to this video (.mp4)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also stream the rows to this table."),
    window: bool = typer.Option(True, help="Show the annotated frames in a window (q or Esc quits)."),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="Stop after this many seconds."),
    detect_every: int = typer.Option(10, help=_SAMPLING_HELP["detect_every"]),
    mode: str = typer.Option("auto", "--mode", "-m", help=_MODE_HELP),
    prior: str = typer.Option("natural", help=_PRIOR_HELP),
) -> None:
    """Analyse a webcam or stream live: overlaid results, fps printed every second, optional recording."""
    import os

    from mien.video.run import analyze_video

    if window and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux"):
        errors.print("error: no display to show a window on; use --no-window (with --record or --output)", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    options = _video_options(mode, None, 0, 0.5, prior, detect_every, True)
    reader = _open_source(source, 1, None, 0.0, None, None)
    with reader:
        try:
            run = analyze_video(reader, output, options, annotate=record, display=window, console=errors,
                                report_fps_every_s=1.0, max_seconds=seconds, timelines=False)
        except OSError as exc:
            errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(_finish_video(run, source, output))


VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".mjpeg"}


@app.command()
def report(
    inputs: List[str] = typer.Argument(..., help="Image files, folders or globs; or one video file."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML file to write."),
    mode: str = typer.Option("auto", "--mode", "-m", help=_MODE_HELP),
    max_faces: int = typer.Option(60, help="Faces shown in detail (heatmap, rationale) in an image report."),
) -> None:
    """One self-contained HTML report: annotated faces, heatmaps, rationales, timelines, summaries, limits."""
    from mien.analyzer import Analyzer, AnalyzerOptions
    from mien.io.images import expand_inputs
    from mien.report.html import image_report, video_report
    from mien.video.analyzer import VideoOptions
    from mien.video.reader import VideoError

    _check_choice("--mode", mode, ("fast", "thorough", "auto"))
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in VIDEO_SUFFIXES:
        try:
            video_report(inputs[0], output, VideoOptions(analyzer=AnalyzerOptions(mode=mode)))
        except VideoError as exc:
            errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_FAILED_INPUTS)
    else:
        paths = list(expand_inputs(inputs))
        if not paths:
            errors.print("mien: no inputs given")
            raise typer.Exit(EXIT_USAGE)
        with Analyzer(AnalyzerOptions(mode=mode)) as analyzer, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=errors, transient=True, disable=len(paths) < 2,
        ) as progress:
            task = progress.add_task("report", total=len(paths))
            failed = image_report(paths, output, analyzer, max_faces, progress=lambda: progress.advance(task))
        for line in failed:
            errors.print(f"error: {line}", soft_wrap=True, highlight=False)
        if failed:
            console.print(f"wrote {output}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_FAILED_INPUTS)
    console.print(f"wrote {output}", soft_wrap=True, highlight=False)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("mien-demo"), "--out", "-o", help="Folder for the table and annotated image."),
) -> None:
    """Analyse the bundled astronaut photo (public domain): prints a table, writes CSV and a picture."""
    from importlib.resources import files

    photo = Path(str(files("mien") / "data" / "astronaut.jpg"))
    table = out_dir / "astronaut.csv"
    code = run_analysis([str(photo)], table, "auto", "auto", None, 0, DEFAULT_MIN_SCORE, "2d", out_dir)
    if code == EXIT_OK:
        console.print(f"annotated image: {out_dir / 'astronaut_annotated.jpg'}", soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def models() -> None:
    """List the model weights mien uses: source package, license, checksum, status."""
    from mien.models.registry import list_models, verify

    table = Table(title="models")
    for col in ("name", "file", "contents", "source", "license", "runtime", "sha256", "status"):
        table.add_column(col, overflow="fold")
    for info in list_models():
        status = "[green]ok[/green]" if verify(info.name) else "[red]missing[/red]"
        table.add_row(info.name, info.file, info.description, info.source, info.license, info.runtime,
                      info.sha256[:16] + "...", status)
    console.print(table)


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Datasets folder holding ferplus/ and affectnet8/ (as ../shared/datasets)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoint, best weights, training.json, expression.onnx."),
    epochs: int = typer.Option(30, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int = typer.Option(2, help="CPU threads for torch."),
    cache: Path = typer.Option(Path(".cache/expr"), help="Folder for cached aligned crops and blendshapes."),
    stop_after: Optional[int] = typer.Option(None, help="Stop after this many epochs in this call (resume later with the same command)."),
    lr: float = typer.Option(3e-3, help="Peak learning rate (one-cycle schedule)."),
    init: Optional[Path] = typer.Option(None, help="Fine-tune from an earlier run's best.pt instead of starting from scratch."),
    sets: str = typer.Option("ferplus-train,affectnet8-train", help="Comma-separated training sets."),
    select: str = typer.Option("", help="Comma-separated valid sets whose mean accuracy picks the best epoch (default: all)."),
    channels: str = typer.Option("16,32,64,128", help="Channels of the four CNN stages (width of the model)."),
    top: int = typer.Option(256, help="Width of the image feature layer."),
    test_flip: bool = typer.Option(True, help="Average over the face and its mirror image (about half the speed)."),
    init_share: float = typer.Option(0.0, min=0.0, max=1.0, help="With --init: ship this share of the initial weights "
                                     "averaged with the fine-tuned ones (WiSE-FT); 0 ships the fine-tuned weights. "
                                     "Re-running a finished run with another share re-exports it without training."),
    precision: str = typer.Option("auto", help="auto, bf16 or fp32: bf16 autocast trains ~2x faster on CPUs with "
                                  "AVX512-BF16 or AMX; auto uses it where the CPU has it."),
    domain_bias: bool = typer.Option(True, help="Learn a class-prior bias per dataset (FER+, AffectNet) while "
                                     "training; the model ships with FER+'s."),
    balance: float = typer.Option(0.3, min=0.0, max=1.0, help="Class-balanced sampling: a face is drawn with weight "
                                  "(1 / its class frequency) ** BALANCE; 0 samples as the data come, 1 balances fully."),
    exclude: str = typer.Option("", help="Comma-separated classes to leave out of training (open-set experiments)."),
    valid_sets: str = typer.Option("ferplus-valid,affectnet8-valid", "--valid-sets",
                                   help="Comma-separated validation sets (selection and calibration), e.g. add rafdb-valid."),
    input_size: int = typer.Option(48, help="Side in pixels of the crop the model reads (48, 64, 80, 96...; divisible by 16)."),
    colour: bool = typer.Option(False, "--colour/--grey", help="RGB crops (cached at 96 px) instead of grey 48 px ones."),
    grey_prob: float = typer.Option(0.0, min=0.0, max=1.0, help="With --colour: share of training faces turned grey "
                                    "(keeps grey inputs such as FER+ familiar)."),
) -> None:
    """Train the expression model (needs `pip install mien\\[train]`); re-running resumes an interrupted run."""
    try:
        from mien.train.export import train_and_export
        from mien.train.loop import TrainConfig
    except ImportError as error:
        raise typer.BadParameter(f"training needs the train extra (pip install 'mien[train]'): {error}") from error
    from mien.expression.classes import EXPRESSIONS
    from mien.train.datasets import BUILTIN

    try:
        stage_channels = tuple(int(c) for c in channels.split(","))
    except ValueError:
        raise typer.BadParameter(f"--channels takes comma-separated integers, got {channels!r}") from None
    train_sets = tuple(name.strip() for name in sets.split(",") if name.strip())
    select_on = tuple(name.strip() for name in select.split(",") if name.strip())
    unknown = [name for name in train_sets if name not in BUILTIN]
    if unknown:
        raise typer.BadParameter(f"unknown sets {unknown}; choose from {', '.join(BUILTIN)}")
    excluded = tuple(c.strip() for c in exclude.split(",") if c.strip())
    if any(c not in EXPRESSIONS for c in excluded):
        raise typer.BadParameter(f"--exclude takes classes of {', '.join(EXPRESSIONS)}")
    valid = tuple(name.strip() for name in valid_sets.split(",") if name.strip())
    unknown = [name for name in valid if name not in BUILTIN]
    if unknown:
        raise typer.BadParameter(f"unknown sets {unknown}; choose from {', '.join(BUILTIN)}", param_hint="--valid-sets")
    if input_size % 16:
        raise typer.BadParameter("must be divisible by 16 (four 2x poolings)", param_hint="--input-size")
    config = TrainConfig(epochs=epochs, seed=seed, threads=threads, lr=lr, init_from=str(init) if init else None,
                         train_sets=train_sets, valid_sets=valid, select_on=select_on,
                         init_share=init_share if init else 0.0,
                         channels=stage_channels, top=top, test_flip=test_flip, precision=precision,
                         domain_bias=domain_bias, balance_power=balance,
                         exclude=excluded, input_size=input_size, colour=colour, grey_prob=grey_prob)
    bad_select = [name for name in select_on if name not in config.valid_sets]
    if bad_select:
        raise typer.BadParameter(f"--select takes valid sets: {', '.join(config.valid_sets)}")
    command = shlex.join(["mien", *sys.argv[1:]])  # as typed; training.json also records every setting
    train_and_export(config, data, out, cache, command=command, log=console.print, stop_after=stop_after)


@app.command("eval")
def eval_command(
    dataset: str = typer.Argument(..., help="ferplus-test-majority (FER+ authors' protocol), ferplus-test (all faces), ferplus-valid[-majority], rafdb-test (RAF-DB basic, 7 classes), rafdb-valid, "
                                 "affectnet8-valid, or a folder DIR/<class>/*.jpg|png."),
    crops: Optional[bool] = typer.Option(None, "--crops/--detect", help="Images are face crops (default for built-in sets) or need face detection (default for folders)."),
    datasets: Path = typer.Option(Path("../shared/datasets"), envvar="MIEN_DATASETS", help="Folder of the built-in datasets."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for eval.json, confusion.png, reliability.png (default mien-eval/NAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of tables."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N images (quick checks)."),
    model: Optional[Path] = typer.Option(None, help="Another expression ONNX file to evaluate."),
    prior: str = typer.Option("natural", help=_PRIOR_HELP),
) -> None:
    """Accuracy, macro-F1, per-class precision/recall, confusion matrix, ECE and speed of the expression model."""
    import json

    from mien.expression.classes import EXPRESSIONS
    from mien.expression.classifier import ExpressionClassifier
    from mien.expression.evaluate import evaluate
    from mien.report.plots import confusion_png, reliability_png
    from mien.train.datasets import BUILTIN, read_builtin, read_class_folders

    _check_choice("--prior", prior, PRIORS)
    notes = []
    if dataset in BUILTIN:
        try:
            labelled = read_builtin(dataset, datasets)
        except FileNotFoundError as error:
            errors.print(f"error: {error} (set --datasets or MIEN_DATASETS)", soft_wrap=True)
            raise typer.Exit(EXIT_USAGE)
        crops = True if crops is None else crops
    elif Path(dataset).is_dir():
        labelled, skipped = read_class_folders(Path(dataset))
        notes += [f"folder {name!r} is not an expression class; skipped" for name in skipped]
        crops = False if crops is None else crops
    else:
        errors.print(f"error: {dataset}: not a built-in dataset ({', '.join(BUILTIN)}) or a folder", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    missing = [c for c in EXPRESSIONS if c not in labelled.classes_present]
    if missing:
        notes.append(f"classes absent from {labelled.name}, dropped from the metrics: {', '.join(missing)}")
    if not len(labelled):
        errors.print(f"error: {dataset}: no labelled images found", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    paths, labels = labelled.paths[:limit], labelled.labels[:limit]
    report = evaluate(labelled.name, paths, labels, labelled.classes_present, crops,
                      ExpressionClassifier(model, prior=prior), progress=not as_json)
    report["notes"] = notes
    out_dir = out_dir or Path("mien-eval") / labelled.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    if report["evaluated"]:
        confusion_png(report, out_dir / "confusion.png")
        reliability_png(report, out_dir / "reliability.png")
    for line in notes + report["errors"]:
        errors.print(f"note: {line}" if line in notes else f"error: {line}", soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        _print_eval(report, out_dir)
    raise typer.Exit(EXIT_FAILED_INPUTS if report["errors"] else EXIT_OK)


@app.command("eval-aus")
def eval_aus(
    folder: Path = typer.Argument(..., help="A folder with labels.csv (file, aus: e.g. 1+4+L12+25, null = not coded) "
                                            "and images/, as RAF-CE's train/ and valid/."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for aus.json and aus.png "
                                                                     "(default mien-eval/aus-FOLDERNAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of a table."),
) -> None:
    """Action units against FACS coders: per-AU positives, AUROC, F1 at the shipped threshold, best-F1 threshold."""
    import json

    from mien.expression.au_eval import au_bars_png, evaluate_folder

    if not (folder / "labels.csv").is_file():
        errors.print(f"error: {folder}: no labels.csv (see mien eval-aus --help)", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    report = evaluate_folder(folder, progress=not as_json)
    out_dir = out_dir or Path("mien-eval") / f"aus-{folder.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "aus.json").write_text(json.dumps(report, indent=2))
    au_bars_png(report, out_dir / "aus.png")
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    table = Table(title=f"{folder}: {report['faces']} coded faces with a mesh; AUxx_p (learned occurrence)")
    for col in ("AU", "positives", "AUROC", "F1 at threshold", "best threshold", "best F1"):
        table.add_column(col, justify="right")
    for au, e in report["per_au"].items():
        if "auroc" in e:
            table.add_row(au, str(e["positives"]), f"{e['auroc']:.3f}", f"{e['f1']:.3f} (>= {e['threshold']:g})",
                          f"{e['best_threshold']:.3f}", f"{e['best_f1']:.3f}")
    console.print(table)
    console.print(f"AUxx_p (learned occurrence), mean over {len(report['aus_counted'])} AUs with >= "
                  f"{report['min_positives']} positives: AUROC {report['mean_auroc']}, F1 {report['mean_f1']}; "
                  f"AUxx (rule-based estimates, >= 0.3): AUROC {report['estimates']['mean_auroc']}, "
                  f"F1 {report['estimates']['mean_f1']}", soft_wrap=True, highlight=False)
    console.print(f"wrote {out_dir / 'aus.json'}, {out_dir / 'aus.png'}", soft_wrap=True, highlight=False)


def _print_eval(report: dict, out_dir: Path) -> None:
    speed = report["classifier"]
    console.print(f"[bold]{report['dataset']}[/bold] ({report['mode']}): {report['evaluated']} of {report['images']} "
                  f"images evaluated, {report['no_face']} without a face, {len(report['errors'])} unreadable", soft_wrap=True)
    console.print(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
                  f"mean class accuracy {report['balanced_accuracy']:.4f}  ECE {report['ece']:.4f}", soft_wrap=True)
    console.print(f"speed: {report['images_per_s']:.1f} images/s end to end; classifier {speed['faces_per_s']:.0f} "
                  f"faces/s batched ({speed['batch']}), {speed['latency_ms']:.2f} ms for one face", soft_wrap=True)
    per_class = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(col, justify="right")
    for name, m in report["per_class"].items():
        per_class.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(per_class)
    confusion = Table(title="confusion (rows true, columns predicted)")
    confusion.add_column("true \\ pred")
    for name in report["classes"]:
        confusion.add_column(name[:8], justify="right")
    for name in report["classes_present"]:
        row = report["confusion"][report["classes"].index(name)]
        confusion.add_row(name, *map(str, row))
    console.print(confusion)
    console.print(f"wrote {out_dir / 'eval.json'}, confusion.png, reliability.png", soft_wrap=True)


@app.command()
def info(
    path: Path = typer.Argument(..., help="A table (.parquet, .csv, .jsonl), an HTML report or a batch output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole record as JSON."),
) -> None:
    """How an output was made: mien version, model checksums, analysis options, prior, input checksums."""
    import json

    from mien.provenance import flat_options, read_provenance

    if not path.exists():
        errors.print(f"error: {path}: no such file or folder", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    try:
        record = read_provenance(path)
    except (OSError, ValueError) as exc:
        errors.print(f"error: {path}: cannot read its provenance ({exc})", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_FAILED_INPUTS)
    if record is None:
        errors.print(f"error: {path}: no provenance found (not written by mien, or by a version before 0.2)",
                     soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_FAILED_INPUTS)
    if as_json:
        sys.stdout.write(json.dumps(record, indent=1) + "\n")
        return
    console.print(f"[bold]{path}[/bold]: {record.get('kind', '?')} made by {record.get('made_by')} "
                  f"at {record.get('created_utc')}", soft_wrap=True, highlight=False)
    table = Table(title="models", show_lines=False)
    for col in ("model", "file", "SHA-256"):
        table.add_column(col)
    for name, model in record.get("models", {}).items():
        table.add_row(name, model["file"], model["sha256"])
    console.print(table)
    options = Table(title="options", show_lines=False)
    options.add_column("option")
    options.add_column("value")
    for key, value in flat_options(record.get("options", {})).items():
        options.add_row(key, str(value))
    console.print(options)
    inputs = record.get("inputs", [])
    console.print(f"{len(inputs)} inputs" + (":" if inputs else ""), highlight=False)
    for item in inputs[:20]:
        console.print(f"  {item.get('sha256') or '-'}  {item.get('source')}", soft_wrap=True, highlight=False)
    if len(inputs) > 20:
        console.print(f"  ... and {len(inputs) - 20} more (--json lists them all)", highlight=False)


@app.command()
def card(
    model: str = typer.Argument("expression", help="Model name (see `mien models`)."),
    write: Optional[Path] = typer.Option(None, "--write", help="Also write the Markdown to this file."),
) -> None:
    """Print a model card: intended and out-of-scope uses, training data and terms, metrics, limits."""
    from mien.report.card import render_card

    try:
        text = render_card(model)
    except KeyError as error:
        errors.print(f"error: {error.args[0]}", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    except FileNotFoundError:
        errors.print(f"error: the model card data for {model!r} is missing from this install", soft_wrap=True)
        raise typer.Exit(EXIT_FAILED_INPUTS)
    if write:
        write.write_text(text)
    sys.stdout.write(text)


@app.command()
def batch(
    inputs: List[str] = typer.Argument(..., help="Image files, folders (recursive: images and videos), globs, videos."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: parts/*.parquet + manifest.jsonl."),
    workers: Optional[int] = typer.Option(None, min=1, help="Local worker processes (default: one per CPU; 1: in "
                                                          "this process); with --ray, actors (default: one per cluster CPU)."),
    ray: Optional[str] = typer.Option(None, help="Run on Ray: 'local' (start one here), 'auto' (join this "
                                                 "machine's cluster) or a cluster address (ray://head:10001)."),
    shard_size: int = typer.Option(64, min=1, help="Images per task."),
    chunk_s: float = typer.Option(300.0, help="Split videos into chunks of this many seconds (0: whole videos)."),
    every: int = typer.Option(1, min=1, help="Analyse every Nth video frame."),
    mode: str = typer.Option("auto", help="Detector mode: fast, thorough or auto."),
    landmarks: str = typer.Option("none", help="Landmark columns: none, 2d or 3d."),
    no_smooth: bool = typer.Option(False, "--no-smooth", help="No temporal smoothing columns for videos."),
    retries: int = typer.Option(2, min=0, help="Retries of a task that fails for a reason other than its input."),
    attributes: bool = typer.Option(False, "--attributes", help=_ATTRIBUTES_HELP),
    prior: str = typer.Option("natural", help=_PRIOR_HELP),
) -> None:
    """Analyse many images and videos into a Parquet dataset, locally or on Ray; re-run to resume.

    Each image shard or video chunk is a task. The folder is one dataset, exactly once: a re-run
    (after a crash or kill -9, or with files added or removed, or another --shard-size/--chunk-s)
    runs only what its finished tasks do not already cover, and readers return each input's rows
    once. A re-run with other analysis options or models is refused: use another output folder.
    Query the result with `mien query OUT "SQL"`.
    """
    from mien.batch import BatchOptions, BatchSetupError, run_batch

    _check_choice("--mode", mode, ("fast", "thorough", "auto"))
    _check_choice("--landmarks", landmarks, ("none", "2d", "3d"))
    _check_choice("--prior", prior, PRIORS)
    options = BatchOptions(mode=mode, every=every, landmarks=landmarks, smooth=not no_smooth, attributes=attributes,
                           prior=prior)
    try:
        summary = run_batch(inputs, output, options, workers=workers, ray=ray, shard_size=shard_size,
                            chunk_s=chunk_s or None, retries=retries, console=errors)
    except BatchSetupError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    for line in summary.errors:
        errors.print(f"error: {line}", highlight=False, markup=False)
    console.print(f"{summary.planned} tasks: {summary.done} done, {summary.skipped} already done, "
                  f"{summary.failed} failed; {summary.rows} rows in {output} ({summary.seconds:.1f} s, "
                  f"{summary.workers} workers)", highlight=False)
    if summary.planned == 0 and not summary.errors:
        errors.print("nothing to do: no images or videos found")
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_FAILED_INPUTS)


@app.command()
def query(
    folder: Path = typer.Argument(..., help="Output folder of `mien batch`."),
    sql: str = typer.Argument(..., help='SQL over the views `faces` and `manifest`, e.g. "SELECT expression, '
                                        'count(*) FROM faces GROUP BY 1".'),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the result (.csv, .parquet, .json)."),
) -> None:
    """Query a batch's results with SQL (DuckDB over the Parquet partitions)."""
    from mien.batch import query as run_query

    if not (folder / "manifest.jsonl").exists():
        errors.print(f"{folder}: not a batch output folder (no manifest.jsonl)")
        raise typer.Exit(EXIT_USAGE)
    try:
        result = run_query(folder, sql)
    except Exception as exc:  # DuckDB's errors name the problem
        errors.print(f"query failed: {str(exc).splitlines()[0]}", highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE)
    if output is not None:
        suffix = output.suffix.lower()
        if suffix == ".parquet":
            result.to_parquet(output, index=False)
        elif suffix == ".json":
            result.to_json(output, orient="records")
        else:
            from mien.io.writer import csv_bytes

            output.write_bytes(csv_bytes(result))  # formula-looking cells escaped, as in every CSV mien writes
        console.print(f"{len(result)} rows -> {output}")
        return
    table = Table(show_lines=False)
    for col in result.columns:
        table.add_column(str(col), overflow="fold")
    for row in result.head(50).itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    if len(result) > 50:
        table.caption = f"first 50 of {len(result)} rows (-o to write them all)"
    console.print(table)


@app.command()
def fairness(
    data: Path = typer.Option(Path("../shared/datasets"), help="Folder with utkface/ (and affectnet8/valid/ for the proxy)."),
    out: Path = typer.Option(Path("benchmarks/fairness_results.json"), "-o", "--out", help="Results JSON."),
    cache: Optional[Path] = typer.Option(Path(".cache/fairness"), help="Keep per-image predictions here (reruns are quick)."),
    write_cards: bool = typer.Option(False, "--write-cards", help="Put the per-group tables into every model card "
                                                                  "(package data) and regenerate docs/cards/*.md."),
    docs: Path = typer.Option(Path("docs/cards"), help="Where --write-cards writes the Markdown cards."),
) -> None:
    """Disaggregated evaluation on UTKFace: detection, mesh, attribute errors and expression distributions per
    age band, gender and race label; per-group tables for the model cards."""
    import json as json_module

    from mien.fairness import card_sections, evaluate

    if not (data / "utkface").exists():
        errors.print(f"{data / 'utkface'}: not found (the UTKFace subsample is needed)")
        raise typer.Exit(EXIT_USAGE)
    results = evaluate(data, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json_module.dumps(results, indent=1) + "\n")
    for gap in results["gaps"]:
        console.print(f"{gap['measure']} by {gap['grouping']}: worst {gap['worst_group']} {gap['worst']:.3g}, "
                      f"best {gap['best_group']} {gap['best']:.3g}", highlight=False)
    console.print(f"wrote {out}")
    if write_cards:
        from mien.report.card import write_cards

        command = "mien fairness --write-cards"
        for path in write_cards(card_sections(results, command), docs):
            console.print(f"wrote {path}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on; anything beyond localhost needs --api-key."),
    port: int = typer.Option(8000, help="TCP port."),
    data_dir: Path = typer.Option(Path("mien-data"), "--data-dir", help="Folder for the job database and results."),
    database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL of the job database (default: SQLite in "
                                                          "--data-dir), e.g. postgresql+psycopg://user:pw@host/db."),
    api_key: Optional[str] = typer.Option(None, envvar="MIEN_API_KEY",
                                          help="Require this key (X-API-Key header); env MIEN_API_KEY."),
    max_upload_mb: float = typer.Option(50.0, help="Largest upload per file, MiB."),
    max_video_s: float = typer.Option(600.0, help="Longest accepted video, seconds."),
    retain_uploads: bool = typer.Option(False, help="Keep uploaded files after processing (default: delete)."),
    blur_faces: bool = typer.Option(False, help="Blur faces in annotated images and heatmaps (anonymised output)."),
    rate_limit: int = typer.Option(600, help="Requests per minute per API key or client address; 0 = no limit."),
    workers: int = typer.Option(1, min=1, help="Image pipelines kept loaded for concurrent requests (about 60 MB each beyond the first)."),
    trust_proxy: bool = typer.Option(False, "--trust-proxy", help="Take client addresses from X-Forwarded-For "
                                     "(only behind a reverse proxy that sets it; otherwise clients could dodge the rate limit)."),
    max_queued: int = typer.Option(50, min=1, help="Most jobs waiting at once; more are refused with 503 and Retry-After."),
    max_pixels: float = typer.Option(40.0, help="Largest image accepted (uploads and webcam frames), megapixels, "
                                     "read from its header before decoding."),
    allowed_host: List[str] = typer.Option([], "--allowed-host", help="Another host name clients may use (the "
                                           "localhost names and --host are allowed; others are refused against "
                                           "DNS rebinding). Repeat for several."),
) -> None:
    """Web page, REST API (docs at /docs) and webcam mode: `mien serve`, then open http://127.0.0.1:8000."""
    import uvicorn

    from mien.server.app import create_app
    from mien.server.settings import LOCAL_HOSTS, ServerSettings

    settings = ServerSettings(data_dir=data_dir, database_url=database_url, api_key=api_key,
                              max_upload_mb=max_upload_mb, max_video_s=max_video_s, retain_uploads=retain_uploads,
                              blur_faces=blur_faces, rate_limit=rate_limit, workers=workers,
                              listen_host=host, allowed_hosts=tuple(allowed_host),
                              max_pixels=int(max_pixels * 1_000_000), max_queued=max_queued)
    if host not in LOCAL_HOSTS and not settings.api_key:
        errors.print(f"refusing to listen on {host} without an API key: pass --api-key or set MIEN_API_KEY")
        raise typer.Exit(EXIT_USAGE)
    errors.print(f"mien {'(API key required) ' if settings.api_key else ''}on http://{host}:{port} "
                 f"(data in {settings.data_dir})", highlight=False)
    # Client addresses (rate limits) come from X-Forwarded-For only behind a proxy the user vouches for;
    # idle keep-alive connections close after 5 s; shutdown waits at most 3 s for open requests.
    from mien.server.timeouts import TimedH11Protocol

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", proxy_headers=trust_proxy,
                forwarded_allow_ips="*" if trust_proxy else None, timeout_keep_alive=5,
                timeout_graceful_shutdown=3, http=TimedH11Protocol)  # + slow-header and stalled-body timeouts


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)


def main() -> None:  # pragma: no cover - entry point for `python -m mien`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
