"""`mien batch` and `mien query`: many files into a Parquet dataset, locally or on Ray, then SQL over it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from mien.cli.common import (ATTRIBUTES_HELP, EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, EXPRESSIONS_HELP, PHOTO_MODE_HELP,
                             PRIOR_HELP, app, check_choice, cli_analyzer_options, console, errors, load_rules_or_exit,
                             require_extra)
from mien.options import LANDMARK_COLUMNS
from mien.wording import counted


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
    mode: str = typer.Option("auto", "--mode", "-m", help=PHOTO_MODE_HELP),
    landmarks: str = typer.Option("none", help="Landmark columns: none, 2d or 3d."),
    no_smooth: bool = typer.Option(False, "--no-smooth", help="No temporal smoothing columns for videos."),
    retries: int = typer.Option(2, min=0, help="Retries of a task that fails for a reason other than its input."),
    attributes: bool = typer.Option(False, "--attributes", help=ATTRIBUTES_HELP),
    prior: str = typer.Option("natural", help=PRIOR_HELP),
    expressions: Optional[Path] = typer.Option(None, "--expressions", help=EXPRESSIONS_HELP),
) -> None:
    """Analyse many images and videos into one Parquet dataset.

    Runs locally or on Ray; re-run the same command to resume.

    Each image shard or video chunk is a task. The folder is one dataset, exactly once: a re-run
    (after a crash or kill -9, or with files added or removed, or another --shard-size/--chunk-s)
    runs only what its finished tasks do not already cover, and readers return each input's rows
    once. A re-run with other analysis options or models is refused: use another output folder.
    Query the result with `mien query OUT "SQL"`.
    """
    from mien.batch import BatchOptions, BatchSetupError, run_batch

    check_choice("--landmarks", landmarks, LANDMARK_COLUMNS)
    cli_analyzer_options(mode=mode, prior=prior)  # a bad value is a usage error naming its flag
    rules = load_rules_or_exit(expressions)
    options = BatchOptions(mode=mode, every=every, landmarks=landmarks, smooth=not no_smooth, attributes=attributes,
                           prior=prior, expressions=None if rules is None else rules.text)
    try:
        summary = run_batch(inputs, output, options, workers=workers, ray=ray, shard_size=shard_size,
                            chunk_s=chunk_s or None, retries=retries, console=errors)
    except BatchSetupError as exc:
        errors.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    for line in summary.errors:
        errors.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
    console.print(f"{counted(summary.planned, 'task')}: {summary.done} done, {summary.skipped} already done, "
                  f"{summary.failed} failed; {counted(summary.rows, 'row')} in {output} ({summary.seconds:.1f} s, "
                  f"{counted(summary.workers, 'worker')})", highlight=False, soft_wrap=True)
    if summary.planned == 0 and not summary.errors:
        errors.print("nothing to do: no images or videos found", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    raise typer.Exit(EXIT_OK if summary.ok else EXIT_FAILED_INPUTS)

@app.command()
def query(
    folder: Path = typer.Argument(..., help="Output folder of `mien batch`."),
    sql: str = typer.Argument(..., help='SQL over the views `faces` and `manifest`, e.g. "SELECT expression, '
                                        'count(*) FROM faces GROUP BY 1".'),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the result (.csv, .parquet, .json)."),
) -> None:
    """Query a batch's results with SQL.

    DuckDB over the Parquet partitions (needs the sql extra)."""
    require_extra("sql", "duckdb")
    from mien.batch import query as run_query

    if not (folder / "manifest.jsonl").exists():
        errors.print(f"{folder}: not a batch output folder (no manifest.jsonl)", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        result = run_query(folder, sql)
    except Exception as exc:  # DuckDB's errors name the problem
        errors.print(f"query failed: {str(exc).splitlines()[0]}", highlight=False, markup=False, soft_wrap=True)
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
        console.print(f"{counted(len(result), 'row')} -> {output}", soft_wrap=True)
        return
    table = Table(show_lines=False)
    for col in result.columns:
        table.add_column(str(col), overflow="fold")
    for row in result.head(50).itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    if len(result) > 50:
        table.caption = f"first 50 of {len(result)} rows (-o to write them all)"
    console.print(table)
