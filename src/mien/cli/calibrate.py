"""`mien calibrate`: per-person neutral calibration of a photo table."""

from __future__ import annotations

from pathlib import Path

import typer

from mien.cli.common import EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, app, console, errors


@app.command()
def calibrate(
    table: Path = typer.Argument(..., help="A table mien analyze wrote (.parquet, .csv or .jsonl)."),
    reference: Path = typer.Option(..., "--reference", help="CSV person,path,neutral (paths relative to it), or a "
                                   "folder with one sub-folder per person holding neutral.* and their photos."),
    output: Path = typer.Option(..., "--output", "-o", help="Calibrated table to write (.parquet, .csv or .jsonl)."),
) -> None:
    """Per-person calibration: each person's neutral photo sets how their face reads at rest; calibrated columns
    (expr_*_cal, expression_cal, AUxx_cal, valence_cal, arousal_cal, person) are added beside the others."""
    from mien.api import calibrate as calibrate_table, read
    from mien.expression.neutral import NeutralReferenceError, read_references
    from mien.io.writer import TableWriteError, TableWriter

    try:
        references = read_references(reference)
    except NeutralReferenceError as exc:
        errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        rows = read(table)
    except (OSError, ValueError) as exc:
        errors.print(f"mien: {table}: cannot read the table ({exc})", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    out = calibrate_table(rows, references)
    record = dict(rows.attrs.get("provenance") or {})
    record["calibration"] = {"reference": str(reference), "people": int(references["person"].nunique()),
                             "method": "mien.expression.neutral"}
    try:
        import pyarrow as pa

        added = [c for c in out.columns if c.endswith("_cal") or c == "person"]
        custom = [c for c in out.columns if c.startswith("custom_")]
        extra = {c: pa.float32() for c in custom}
        extra.update({c: pa.string() if out[c].dtype == object or c == "person" else pa.float32() for c in added})
        attributes = "apparent_age" in out.columns
        landmarks = "3d" if "lm_z_0" in out.columns else "2d" if "lm_x_0" in out.columns else "none"
        with TableWriter(output, provenance=record, landmarks=landmarks, attributes=attributes,
                         extra_columns=extra) as writer:
            writer.write(out)
    except TableWriteError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED_INPUTS)
    calibrated = int(out["expression_cal"].notna().sum())
    console.print(f"calibrated {calibrated} of {int(out['face_found'].sum())} faces "
                  f"({references['person'].nunique()} people) -> {output}", soft_wrap=True)
    raise typer.Exit(EXIT_OK)
