"""Write a long run's rows as they come, in constant memory, without losing finished work.

`StreamingTableWriter` buffers rows and flushes them every `flush_rows` rows or `flush_s`
seconds. Parquet output is written as complete part files in `OUT.parquet.parts/` while the
run goes on (each readable on its own; `pandas.read_parquet("OUT.parquet.parts")` reads them
all), and merged into `OUT.parquet` row group by row group when the run ends, so a run killed
at any moment leaves everything up to its last flush readable. CSV and JSON Lines are appended
and flushed to disk at each flush.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd

from mien.io.table import TableFormat, TableWriter, resolve_format, to_openface


def parts_dir(path: Path) -> Path:
    """Folder of the part files of a Parquet output while it is being written."""
    return path.with_name(path.name + ".parts")


class StreamingTableWriter:
    """Appends tidy rows with periodic flushes (see module docs). Use as a context manager."""

    def __init__(self, path: str | Path, fmt: TableFormat = "auto", flush_rows: int = 5000,
                 flush_s: float = 10.0) -> None:
        self.path = Path(path)
        self.format, self.openface = resolve_format(self.path, fmt)
        self.flush_rows, self.flush_s = flush_rows, flush_s
        self.rows = 0
        self._buffer: list[pd.DataFrame] = []
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._parts = 0
        self._schema = None
        self._text = None if self.format == "parquet" else TableWriter(self.path, fmt)
        if self.format == "parquet":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if parts_dir(self.path).exists():
                shutil.rmtree(parts_dir(self.path))  # left by an earlier killed run of the same output
            parts_dir(self.path).mkdir()

    def __enter__(self) -> "StreamingTableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, frame: pd.DataFrame) -> None:
        """Queue rows; they reach the disk at the next flush."""
        self._buffer.append(frame)
        self._buffered += len(frame)
        self.rows += len(frame)
        if self._buffered >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows to disk now."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        frame = pd.concat(self._buffer, ignore_index=True)
        self._buffer, self._buffered = [], 0
        if self._text is not None:
            self._text.write(frame)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.openface:
            frame = to_openface(frame)
        if self._schema is None:
            schema = pa.Schema.from_pandas(frame, preserve_index=False)
            # A column that is all missing in the first rows (no face yet) would be typed null.
            self._schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema])
        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        part = parts_dir(self.path) / f"part-{self._parts:06d}.parquet"
        tmp = part.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(part)  # a part is either complete or absent
        self._parts += 1

    def close(self) -> None:
        """Flush, then (Parquet) merge the parts into the output file and remove them."""
        self.flush()
        if self._text is not None:
            self._text.close()
            return
        if not parts_dir(self.path).exists():
            return
        import pyarrow.parquet as pq

        parts = sorted(parts_dir(self.path).glob("part-*.parquet"))
        tmp = self.path.with_name(self.path.name + ".tmp")
        if parts:
            with pq.ParquetWriter(tmp, self._schema) as writer:
                for part in parts:
                    file = pq.ParquetFile(part)
                    for group in range(file.num_row_groups):
                        writer.write_table(file.read_row_group(group))
            tmp.replace(self.path)
        shutil.rmtree(parts_dir(self.path))
