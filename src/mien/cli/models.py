"""`mien models`, `mien card` and `mien info`: the weights, their cards, and how an output was made."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mien.cli.common import EXIT_FAILED_INPUTS, EXIT_USAGE, app, console, errors
from mien.wording import counted


@app.command()
def models() -> None:
    """List the model weights mien uses.

    Each with its source package, license, checksum and status."""
    from mien.models.registry import list_models, verify

    for block in model_blocks(list_models(), verify):
        console.print(block)


def model_blocks(infos, verify) -> list:
    """One block per model (name, status, file and checksum; then what it is, where it comes from, its licence and
    runtime, indented): readable at 80 columns as at 200, where a table's eight columns fold letter by letter."""
    from rich.padding import Padding
    from rich.text import Text

    blocks = []
    for info in infos:
        status = Text("ok", "green") if verify(info.name) else Text("missing", "red")
        head = Text.assemble((info.name, "bold"), "  ", status, f"  {info.file}  sha256 {info.sha256[:16]}...")
        detail = Text(f"{info.description}\nsource: {info.source}; licence: {info.license}; runs on {info.runtime}")
        blocks += [head, Padding(detail, (0, 0, 1, 2))]
    return blocks

@app.command()
def card(
    model: str = typer.Argument("expression", help="Model name (see `mien models`)."),
    write: Optional[Path] = typer.Option(None, "--write", help="Also write the Markdown to this file."),
) -> None:
    """Print a model card.

    Intended and out-of-scope uses, training data and its terms, metrics and limits."""
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
def info(
    path: Path = typer.Argument(..., help="A table (.parquet, .csv, .jsonl), an HTML report or a batch output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole record as JSON."),
) -> None:
    """Show how an output was made (its provenance).

    mien version, model checksums, analysis options, prior and input checksums."""
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
    for label, key in (("mesh", "mesh"), ("valence/arousal", "valence_arousal")):  # methods that decide numbers
        if record.get(key):
            console.print(f"{label}: {record[key]}", soft_wrap=True, highlight=False)
    for note in record.get("openface_conventions", []):
        console.print(f"OpenFace format: {note}", soft_wrap=True, highlight=False)
    inputs = record.get("inputs", [])
    console.print(counted(len(inputs), 'input') + (":" if inputs else ""), highlight=False, soft_wrap=True)
    for item in inputs[:20]:
        console.print(f"  {item.get('sha256') or '-'}  {item.get('source')}", soft_wrap=True, highlight=False)
    if len(inputs) > 20:
        console.print(f"  ... and {len(inputs) - 20} more (--json lists them all)", highlight=False, soft_wrap=True)
