"""`TableWriter`: the one writer of mien's tidy tables (images, video, batch partitions).

Rows arrive as `Faces` (or Arrow tables / DataFrames) and are buffered, then written every
`flush_rows` rows or `flush_s` seconds with the declared schema of `mien.io.table`, so any order
of faces, empty images and missing values writes. Parquet goes to complete part files in
`OUT.parquet.parts/` while the run goes on (each readable alone) and is merged into `OUT.parquet`
on `close()`; CSV and JSON Lines are appended and flushed. A run that fails or is killed keeps
every row up to its last flush. Provenance (`mien.provenance`) goes into the Parquet key-value
metadata and, for CSV and JSON Lines, into `OUT.meta.json`. CSV cells that a spreadsheet would
run as a formula (starting with = + - @ tab or CR) get a leading apostrophe.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from mien.faces import Faces
from mien.provenance import METADATA_KEY, read_provenance, sidecar_path  # noqa: F401 (read_provenance re-exported)
from mien.io.table import (LandmarkColumns, TableFormat, arrow_to_frame, faces_to_arrow, frame_to_arrow, resolve_format, table_schema)
from mien.io.openface import OPENFACE_NOTES, to_openface

if TYPE_CHECKING:
    from mien.expression.rules import RuleSet

_FORMULA_START = r"^[=+\-@\t\r]"


class TableWriteError(OSError):
    """A table could not be written; the message names the file and the reason in one line."""


def parts_dir(path: Path) -> Path:
    """Folder of the part files of a Parquet output while it is being written."""
    return path.with_name(path.name + ".parts")


def escape_formulas(table):
    """String columns with formula-looking cells prefixed by an apostrophe (CSV injection)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column, field in zip(table.columns, table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = column.cast(pa.string())
            risky = pc.fill_null(pc.match_substring_regex(column, _FORMULA_START), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.schema.names)


def csv_bytes(rows) -> bytes:
    """A table (Arrow or DataFrame) as CSV bytes, formula cells escaped as in every CSV mien writes."""
    import io

    import pyarrow.csv as pcsv

    table = frame_to_arrow(rows) if isinstance(rows, pd.DataFrame) else rows
    sink = io.BytesIO()
    pcsv.write_csv(escape_formulas(table), sink)
    return sink.getvalue()


def provenance_metadata(provenance: dict | None) -> dict[bytes, bytes] | None:
    """Parquet key-value metadata holding a provenance record (None: no metadata)."""
    return None if provenance is None else {METADATA_KEY: json.dumps(provenance, default=str).encode()}


def write_parquet(rows, path: str | Path, provenance: dict | None = None) -> None:
    """Write a whole table (Arrow or DataFrame) to one Parquet file at once, with its provenance."""
    import pyarrow.parquet as pq

    table = frame_to_arrow(rows) if isinstance(rows, pd.DataFrame) else rows
    table = table.replace_schema_metadata(provenance_metadata(provenance))
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


class TableWriter:
    """Streams tidy rows to Parquet, CSV or JSON Lines (see module docs). Use as a context manager.

    Args:
        path: output file; the format comes from its suffix or `fmt`.
        fmt: "auto", "parquet", "csv", "jsonl" or "openface" (OpenFace 2.x names, CSV).
        landmarks, smoothed, attributes: the optional column groups (fix the schema up front).
        provenance: how the table was made (`mien.provenance.provenance`); None writes none.
        flush_rows, flush_s: write buffered rows at least this often.
        rules: custom expressions (`mien.expression.rules`): a `custom_<name>` column each.
        extra_columns: more columns (name -> pyarrow type) after the standard ones, for `write` (calibration).
    """

    BATCH_FRAMES = 64

    def __init__(self, path: str | Path, fmt: TableFormat = "auto", landmarks: LandmarkColumns = "2d",
                 smoothed: bool = False, attributes: bool = False, provenance: dict | None = None,
                 flush_rows: int = 5000, flush_s: float = 10.0, rules: "RuleSet | None" = None,
                 extra_columns: dict | None = None) -> None:
        self.path = Path(path)
        self.format, self.openface = resolve_format(self.path, fmt)
        if self.format not in ("parquet", "csv", "jsonl"):
            raise ValueError(f"unknown table format {self.format!r}")
        self.landmarks, self.smoothed, self.attributes = landmarks, smoothed, attributes
        self.rules = rules
        self.extra_columns = extra_columns or {}
        self.provenance = self._noted(provenance)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.rows = 0  # rows accepted (written or buffered)
        self.schema = self._schema()
        self._faces: list[Faces] = []
        self._buffer: list = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._parts = 0
        self._csv = None
        self._text = None
        self._closed = False
        self._guard(self._open)

    # -- public -----------------------------------------------------------------------------------
    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write_faces(self, frames: Iterable[Faces]) -> int:
        """Queue the rows of these frames (one per face, one for a frame without faces); returns how many.
        Frames are turned into columns `BATCH_FRAMES` at a time: one conversion for many images."""
        frames = list(frames)
        count = sum(max(len(f), 1) for f in frames)
        self._faces += frames
        self._buffered += count
        self.rows += count
        if len(self._faces) >= self.BATCH_FRAMES:
            self._convert()
        self._maybe_flush()
        return count

    def _convert(self) -> None:
        if self._faces:
            table = faces_to_arrow(self._faces, self.landmarks, smoothed=self.smoothed, attributes=self.attributes)
            self._faces = []
            self._buffer.append(table)

    def _maybe_flush(self) -> None:
        if self._buffered >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def write(self, rows) -> int:
        """Queue rows (a pyarrow Table or a DataFrame of tidy columns); they reach the disk at the next flush."""
        import pyarrow as pa

        if isinstance(rows, pd.DataFrame):
            rows = frame_to_arrow(rows)
        elif not isinstance(rows, pa.Table):
            raise TypeError(f"rows must be a pyarrow Table or a DataFrame, not {type(rows).__name__}")
        if not rows.num_rows:
            return 0
        self._convert()  # keep the order of rows given as Faces before
        self._buffer.append(rows)
        self._buffered += rows.num_rows
        self.rows += rows.num_rows
        self._maybe_flush()
        return rows.num_rows

    def flush(self) -> None:
        """Write the queued rows to disk now."""
        self._last_flush = time.monotonic()
        self._convert()
        if not self._buffer:
            return
        import pyarrow as pa

        table = pa.concat_tables(self._buffer, promote_options="default")
        self._buffer, self._buffered = [], 0
        self._guard(self._write_table, table)

    def close(self) -> None:
        """Flush, then (Parquet) merge the parts into the output file; CSV/JSONL get their sidecar."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._guard(self._finish)

    def set_provenance(self, provenance: dict) -> None:
        """Replace the provenance written at `close()` (e.g. with the inputs' checksums added)."""
        self.provenance = self._noted(provenance)

    def _noted(self, provenance: dict | None) -> dict | None:
        """OpenFace-format output says in its provenance what differs from OpenFace's own."""
        if provenance is None or not self.openface:
            return provenance
        return {**provenance, "openface_conventions": list(OPENFACE_NOTES)}

    # -- internals --------------------------------------------------------------------------------
    def _guard(self, action, *args):
        """Run a write step; any I/O or Arrow failure becomes one `TableWriteError` line naming the file."""
        import pyarrow as pa

        try:
            return action(*args)
        except TableWriteError:
            raise
        except (OSError, ValueError, pa.ArrowException) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TableWriteError(f"{self.path}: cannot write the table ({reason})") from None

    def _schema(self):
        import pyarrow as pa

        schema = table_schema(self.landmarks, self.smoothed, self.attributes)
        if self.openface:
            sample = to_openface(arrow_to_frame(schema.empty_table()))
            fields = [pa.field(n, pa.string() if sample[n].dtype == object else pa.from_numpy_dtype(sample[n].dtype))
                      for n in sample.columns]
            schema = pa.schema(fields)
        if self.rules is not None:
            schema = pa.schema(list(schema) + [pa.field(name, pa.float32()) for name in self.rules.columns])
        if self.extra_columns:
            schema = pa.schema(list(schema) + [pa.field(n, t) for n, t in self.extra_columns.items()
                                               if n not in schema.names])
        return schema

    def _with_metadata(self, schema):
        metadata = provenance_metadata(self.provenance)
        return schema if metadata is None else schema.with_metadata(metadata)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet":
            if parts_dir(self.path).exists():
                shutil.rmtree(parts_dir(self.path))  # left by an earlier killed run of the same output
            parts_dir(self.path).mkdir()
        elif self.format == "csv":
            import pyarrow.csv as pcsv

            self._text = open(self.path, "wb")
            self._csv = pcsv.CSVWriter(self._text, self.schema)
            self._text.flush()
            self._write_sidecar()
        else:
            self._text = open(self.path, "w", encoding="utf-8")
            self._write_sidecar()

    def _conform(self, table):
        """The rows in this writer's schema (OpenFace names if asked; missing optional columns null)."""
        import pyarrow as pa

        if self.rules is not None:
            custom = self.rules.add_to_arrow(table).select(self.rules.columns)
        if self.openface:
            table = frame_to_arrow(to_openface(arrow_to_frame(table)))
        if self.rules is not None:
            for name in self.rules.columns:
                table = (table.set_column(table.schema.get_field_index(name), name, custom.column(name))
                         if name in table.schema.names else table.append_column(name, custom.column(name)))
        columns, present = [], set(table.schema.names)
        for field in self.schema:
            if field.name in present:
                column = table.column(field.name)
                columns.append(column if column.type == field.type else column.cast(field.type))
            else:
                columns.append(pa.nulls(table.num_rows, field.type))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def _write_table(self, table) -> None:
        table = self._conform(table)
        if self.format == "parquet":
            import pyarrow.parquet as pq

            part = parts_dir(self.path) / f"part-{self._parts:06d}.parquet"
            tmp = part.with_suffix(".tmp")
            pq.write_table(table.replace_schema_metadata(provenance_metadata(self.provenance)), tmp)
            tmp.replace(part)  # a part is either complete or absent
            self._parts += 1
        elif self.format == "csv":
            self._csv.write_table(escape_formulas(table))
            self._text.flush()
        else:
            frame = arrow_to_frame(table)
            text = frame.to_json(orient="records", lines=True, double_precision=7)
            self._text.write(text if text.endswith("\n") else text + "\n")
            self._text.flush()

    def _write_sidecar(self) -> None:
        if self.provenance is not None and self.format != "parquet":
            tmp = sidecar_path(self.path).with_suffix(".tmp")
            tmp.write_text(json.dumps(self.provenance, indent=1, default=str) + "\n")
            tmp.replace(sidecar_path(self.path))

    def _finish(self) -> None:
        if self.format != "parquet":
            if self._csv is not None:
                self._csv.close()
                self._csv = None
            if self._text is not None:
                self._text.close()
                self._text = None
            self._write_sidecar()
            return
        if not parts_dir(self.path).exists():
            return
        import pyarrow.parquet as pq

        parts = sorted(parts_dir(self.path).glob("part-*.parquet"))
        tmp = self.path.with_name(self.path.name + ".tmp")
        schema = self._with_metadata(self.schema)
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                file = pq.ParquetFile(part)
                for group in range(file.num_row_groups):
                    writer.write_table(file.read_row_group(group).replace_schema_metadata(schema.metadata))
            if not parts:
                writer.write_table(schema.empty_table())
        tmp.replace(self.path)
        shutil.rmtree(parts_dir(self.path))


def write_frame(frame, path: str | Path, provenance: dict | None = None) -> None:
    """Write a DataFrame of mien rows (as `mien.read` returns them, with added columns such as `*_cal`, `person` or
    `custom_*`) in the format of `path`'s suffix; the column layout (landmarks, smoothing, attributes) is read off
    the frame. Raises `TableWriteError`."""
    import pyarrow as pa
    from pandas.api.types import is_numeric_dtype

    from mien.io.table import columns as base_columns

    landmarks = "3d" if "lm_z_0" in frame.columns else "2d" if "lm_x_0" in frame.columns else "none"
    smoothed, attributes = "expression_smooth" in frame.columns, "apparent_age" in frame.columns
    known = set(base_columns(landmarks, smoothed, attributes))
    extra = {c: pa.float32() if is_numeric_dtype(frame[c]) else pa.string() for c in frame.columns if c not in known}
    with TableWriter(path, provenance=provenance, landmarks=landmarks, attributes=attributes, smoothed=smoothed,
                     extra_columns=extra) as writer:
        writer.write(frame)
