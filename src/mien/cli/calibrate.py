"""`mien calibrate`: per-person neutral calibration of a photo table, or per-track calibration of a video table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from mien.cli.common import EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, app, console, errors
from mien.wording import counted

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_HELP = ("CSV person,path,neutral (paths relative to it), or a folder with one sub-folder per person "
                  "holding their photos, the neutral one(s) named neutral*.")
WINDOW_HELP = ("Video tables: each track's rest is its rows in START-END seconds (0-5s), or `auto`: the track's "
               "most neutral two seconds.")


@app.command()
def calibrate(
    table: Path = typer.Argument(..., help="A table mien analyze or mien video wrote (.parquet, .csv or .jsonl), "
                                "or a mien batch output folder."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Photos: " + REFERENCE_HELP),
    window: Optional[str] = typer.Option(None, "--window", help=WINDOW_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Calibrated table to write (.parquet, .csv or .jsonl)."),
) -> None:
    """Calibrate readings to each person's rest (neutral face).

    Each person's neutral photo (or each video track's rest window) sets how their face reads at rest; calibrated
    columns (expr_*_cal, expression_cal, AUxx_p_cal, AUxx_cal, custom_*_cal, valence_cal, arousal_cal, person) are
    added beside the others."""
    from mien.api import read
    from mien.expression.neutral import parse_window

    if (reference is None) == (window is None):
        errors.print("mien: give --reference (photos) or --window (video), not both or neither", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        if window is not None:
            parse_window(window)  # checked before any work
    except ValueError as exc:
        errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        rows = read(table)
    except (OSError, ValueError) as exc:
        errors.print(f"mien: {table}: cannot read the table ({exc})", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    uncalibrated = 0
    if window is not None:
        out, record = calibrated_tracks_or_exit(rows, window)
    else:
        out, record, uncalibrated = _calibrated_photos_or_exit(rows, reference)
    code = write_calibrated(out, record, output)
    raise typer.Exit(EXIT_FAILED_INPUTS if code == EXIT_OK and uncalibrated else code)


def calibrated_tracks_or_exit(rows: pd.DataFrame, window: str) -> tuple[pd.DataFrame, dict]:
    """The per-track calibrated table and its provenance for a window the caller has checked (`parse_window`);
    a table without tracks exits (usage)."""
    from mien.expression.neutral import calibrate_video_table

    if "track_id" not in rows.columns:
        errors.print("mien: --window needs a video table (with track_id); photos take --reference", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    return calibrate_video_table(rows, window)


def _calibrated_photos_or_exit(rows: pd.DataFrame, reference: Path) -> tuple[pd.DataFrame, dict, int]:
    """The calibrated photo table, its provenance and how many people got no rest (one line each on stderr)."""
    from mien.expression.neutral import NeutralReferenceError, calibrate, people_without_rest, read_references

    try:
        references = read_references(reference)
    except NeutralReferenceError as exc:
        errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    missing = people_without_rest(rows, references, str(reference))
    for line in missing:
        errors.print(f"mien: {line}", highlight=False, markup=False, soft_wrap=True)
    out = calibrate(rows, references)
    record = dict(rows.attrs.get("provenance") or {})
    record["calibration"] = {"reference": str(reference), "people": int(references["person"].nunique()),
                             "method": "mien.expression.neutral, per person"}
    return out, record, len(missing)


def write_calibrated(out: pd.DataFrame, record: dict, output: Path, shown: Path | None = None,
                     announce: bool = True) -> int:
    """Write a calibrated table with its provenance (`shown`: the path to name, if not `output`; `announce`: print
    `calibrated_line`); the exit code."""
    from mien.io.writer import TableWriteError, write_frame

    try:
        write_frame(out, output, record)
    except TableWriteError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_FAILED_INPUTS
    if announce:
        console.print(calibrated_line(out, shown or output), soft_wrap=True)
    return EXIT_OK


def calibrated_line(out: pd.DataFrame, output: Path) -> str:
    """"calibrated N of M faces (K people or tracks) -> OUTPUT"."""
    calibrated = int(out["expression_cal"].notna().sum())
    groups = out.loc[out["expression_cal"].notna(), "person"].nunique()
    return (f"calibrated {calibrated} of {counted(int(out['face_found'].sum()), 'face')} "
            f"({counted(groups, 'person or track', 'people or tracks')}) -> {output}")


def calibrate_written(output: Path, window: str | None = None, reference: Path | None = None,
                      announce: bool = True) -> tuple[int, pd.DataFrame]:
    """Replace a table just written by its calibrated copy (same format, provenance extended): per track over
    `window` (a video table) or per person from `reference` (photos). The exit code (failed inputs when a person of
    the reference got no rest) and the calibrated table."""
    import shutil
    import tempfile

    from mien.api import read
    from mien.provenance import sidecar_path

    rows = read(output)
    uncalibrated = 0
    if window is not None:
        out, record = calibrated_tracks_or_exit(rows, window)
    else:
        assert reference is not None
        out, record, uncalibrated = _calibrated_photos_or_exit(rows, reference)
    with tempfile.TemporaryDirectory(dir=output.parent) as tmp:
        staged = Path(tmp) / output.name
        code = write_calibrated(out, record, staged, shown=output, announce=announce)
        if code == EXIT_OK:
            shutil.move(str(staged), str(output))
            if sidecar_path(staged).exists():  # CSV and JSON Lines keep their provenance beside the table
                shutil.move(str(sidecar_path(staged)), str(sidecar_path(output)))
    return (EXIT_FAILED_INPUTS if code == EXIT_OK and uncalibrated else code), out


def reference_photos_or_exit(reference: Path, output: Optional[Path], fmt: str) -> list[str]:
    """Checks `--reference` before any work (a table to calibrate, a readable list); the photos it lists."""
    from mien.expression.neutral import NeutralReferenceError, read_references
    from mien.io.table import resolve_format

    if output is None:
        raise typer.BadParameter("--reference needs --output (the table it calibrates)", param_hint="--reference")
    try:
        if resolve_format(output, fmt)[1]:
            raise typer.BadParameter("--reference needs a mien table (.parquet, .csv or .jsonl), not OpenFace's "
                                     "columns", param_hint="--reference")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output")
    try:
        return list(dict.fromkeys(read_references(reference)["path"]))  # a photo listed twice is read once
    except NeutralReferenceError as exc:
        errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
