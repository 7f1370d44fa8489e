"""`mien analyze`, `mien report` and `mien demo`: images (and a video report) in, tables and pictures out."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mien.cli.common import (ATTRIBUTES_HELP, EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, EXPRESSIONS_HELP, PHOTO_MODE_HELP,
                             PRIOR_HELP, app, check_choice, cli_analyzer_options, cli_video_options, console, errors,
                             load_rules_or_exit, progress_bar)
from mien.cli.calibrate import REFERENCE_HELP, calibrate_written, calibrated_line, reference_photos_or_exit
from mien.cli.summary import summary_table
from mien.options import LANDMARK_COLUMNS, PHOTO_LANDMARKS
from mien.face.settings import DEFAULT_MIN_SCORE
from mien.wording import counted


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
                 attributes: bool = False, rules=None, reference: Optional[Path] = None) -> int:
    """Shared by `analyze` and `demo`; returns the exit code. `rules`: custom expressions (`RuleSet`);
    `reference`: per-person calibration of the written table (checked by the caller)."""
    import pandas as pd

    from mien.images_run import ParallelAnalyzer, default_pipelines
    from mien.io.images import ImageError, expand_each
    from mien.io.table import faces_to_frame, resolve_format
    from mien.io.writer import TableWriteError, TableWriter
    from mien.provenance import analysis_provenance, file_sha256
    from mien.report.annotate import annotate, save_rgb

    options = cli_analyzer_options(mode=mode, max_faces=max_faces, min_face_size=min_face_size, min_score=min_score,
                                   require_mesh=require_mesh, prior=prior, attributes=attributes)
    inputs, empty = expand_each(paths)
    for line in empty:  # a folder without images is an input that failed
        errors.print(f"error: {line}", soft_wrap=True, highlight=False)
    if not inputs:
        errors.print("mien: no images to analyse" if empty else "mien: no inputs given")
        return EXIT_FAILED_INPUTS if empty else EXIT_USAGE
    if output is not None:
        try:
            resolve_format(output, fmt)  # fail before any work on a bad suffix
        except ValueError as exc:
            errors.print(f"mien: {exc}", soft_wrap=True)
            return EXIT_USAGE
    if annotate_dir is not None:
        annotate_dir.mkdir(parents=True, exist_ok=True)
    custom = {} if rules is None else {"expressions": rules.provenance()}
    record = analysis_provenance("images", options, landmarks=landmarks, **custom)
    checksums: list[dict[str, str]] = []
    failed, shown, used_names = len(empty), [], set()
    writer = None
    try:
        if output is not None:
            writer = TableWriter(output, fmt, landmarks=landmarks, attributes=attributes, provenance=record, rules=rules)
        with ParallelAnalyzer(options, default_pipelines(len(inputs))) as analyzer, progress_bar(len(inputs)) as progress:
            task = progress.add_task("analysing", total=len(inputs))
            for path, loaded, faces in analyzer.run(inputs):
                if isinstance(faces, ImageError):
                    failed += 1
                    progress.console.print(f"[red]error:[/red] {path}: {faces}", highlight=False, soft_wrap=True)
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
    calibrated, calibration_code = None, EXIT_OK
    if reference is not None and output is not None and writer is not None and writer.rows:
        calibration_code, calibrated = calibrate_written(output, reference=reference, announce=False)
    if show_table and shown:
        console.print(summary_table(calibrated if calibrated is not None else pd.concat(shown, ignore_index=True)))
    total = len(inputs) + len(empty)
    if output is not None:
        wrote = f"wrote {counted(writer.rows, 'row')} for {total - failed} of {counted(total, 'input')}"
        console.print(f"{wrote} to {output}", soft_wrap=True)
    if calibrated is not None:
        console.print(calibrated_line(calibrated, output), soft_wrap=True)
    if failed:
        errors.print(f"mien: {failed} of {counted(total, 'input')} failed", soft_wrap=True)
        return EXIT_FAILED_INPUTS
    return calibration_code

@app.command()
def analyze(
    paths: Optional[List[str]] = typer.Argument(None, help="Image files, folders (searched recursively) or glob "
                                                "patterns (with --reference and none given: the photos it lists)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Table to write: .parquet, .csv or .jsonl."),
    fmt: str = typer.Option("auto", "--format", "-f", help="auto (from suffix), parquet, csv, jsonl, or openface (OpenFace 2 column names)."),
    mode: str = typer.Option("auto", "--mode", "-m", help=PHOTO_MODE_HELP),
    max_faces: Optional[int] = typer.Option(None, help="Keep at most this many faces per image."),
    min_face_size: int = typer.Option(0, help="Ignore faces smaller than this many pixels."),
    min_score: float = typer.Option(DEFAULT_MIN_SCORE, help="Minimum detector confidence (0-1); rows also need a face mesh in the box."),
    landmarks: str = typer.Option(PHOTO_LANDMARKS, help="Landmark columns: none, 2d or 3d."),
    annotate_dir: Optional[Path] = typer.Option(None, "--annotate", help="Folder for annotated copies of the images."),
    keep_unconfirmed: bool = typer.Option(False, help="Keep every detection, also those neither the mesh nor the full-range detector confirms (more small faces, more false positives; flagged no_mesh)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the summary table."),
    prior: str = typer.Option("natural", help=PRIOR_HELP),
    attributes: bool = typer.Option(False, "--attributes", help=ATTRIBUTES_HELP),
    expressions: Optional[Path] = typer.Option(None, "--expressions", help=EXPRESSIONS_HELP),
    reference: Optional[Path] = typer.Option(None, "--reference", help=REFERENCE_HELP + " Adds the per-person "
                                             "calibrated columns (*_cal) to the table (README, 'Per-person "
                                             "calibration')."),
) -> None:
    """Analyse images: one table row per face.

    Each row: box, pose, gaze, AUs, blendshapes, expression, flags and landmarks."""
    check_choice("--format", fmt, ("auto", "parquet", "csv", "jsonl", "openface"))
    check_choice("--landmarks", landmarks, LANDMARK_COLUMNS)
    rules = load_rules_or_exit(expressions)
    if reference is not None:
        listed = reference_photos_or_exit(reference, output, fmt)
        paths = paths or listed
    code = run_analysis(paths or [], output, fmt, mode, max_faces, min_face_size, min_score, landmarks,
                        annotate_dir, show_table=not quiet, require_mesh=not keep_unconfirmed, prior=prior,
                        attributes=attributes, rules=rules, reference=reference)
    raise typer.Exit(code)


VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".mjpeg"}

@app.command()
def report(
    inputs: List[str] = typer.Argument(..., help="Image files, folders or globs; or one video file."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="The HTML file to write."),
    mode: str = typer.Option("auto", "--mode", "-m", help=PHOTO_MODE_HELP),
    max_faces: int = typer.Option(60, help="Faces shown in detail (heatmap, rationale) in an image report."),
    expressions: Optional[Path] = typer.Option(None, "--expressions", help=EXPRESSIONS_HELP + " In the report: "
                                               "each face's readings, means per image or person, a video lane."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Images: " + REFERENCE_HELP + " Each face "
                                             "card also gives the reading calibrated to the person's rest."),
) -> None:
    """One self-contained HTML report of images or a video.

    Annotated faces, heatmaps, rationales, timelines, summaries and limits in one file."""
    from mien.analyzer import Analyzer
    from mien.expression.neutral import NeutralReferenceError, read_references
    from mien.io.images import expand_each
    from mien.report.html import image_report, video_report
    from mien.video.reader import VideoError

    photo_options = cli_analyzer_options(mode=mode)
    rules = load_rules_or_exit(expressions)
    video = len(inputs) == 1 and Path(inputs[0]).suffix.lower() in VIDEO_SUFFIXES
    references = None
    if reference is not None:
        if video:
            raise typer.BadParameter("--reference calibrates photos (a video's tracks: mien video --calibrate)",
                                     param_hint="--reference")
        try:
            references = read_references(reference)
        except NeutralReferenceError as exc:
            errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE)
    if video:
        try:
            video_report(inputs[0], output, cli_video_options(mode=mode), rules=rules)
        except VideoError as exc:
            errors.print(f"error: {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_FAILED_INPUTS)
    else:
        paths, empty = expand_each(inputs)
        if not paths:
            errors.print("\n".join(empty) or "mien: no inputs given", soft_wrap=True)
            raise typer.Exit(EXIT_USAGE)
        with Analyzer(photo_options) as analyzer, progress_bar(len(paths)) as progress:
            task = progress.add_task("report", total=len(paths))
            failed = image_report(paths, output, analyzer, max_faces, progress=lambda: progress.advance(task),
                                  rules=rules, reference=references)
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
    """Analyse the bundled example photo: table, CSV and picture.

    The photo is the public-domain astronaut portrait shipped with mien."""
    from importlib.resources import files

    photo = Path(str(files("mien") / "data" / "astronaut.jpg"))
    table = out_dir / "astronaut.csv"
    code = run_analysis([str(photo)], table, "auto", "auto", None, 0, DEFAULT_MIN_SCORE, "2d", out_dir)
    if code == EXIT_OK:
        console.print(f"annotated image: {out_dir / 'astronaut_annotated.jpg'}", soft_wrap=True)
    raise typer.Exit(code)
