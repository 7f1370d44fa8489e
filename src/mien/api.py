"""One call each, for notebooks: `mien.analyze`, `mien.analyze_video`, `mien.read`.

>>> import mien
>>> df = mien.analyze("photos/")            # one row per face, errors in df.attrs["errors"]
>>> clip = mien.analyze_video("talk.mp4")   # every frame's rows; segments, events, tracks in attrs
>>> again = mien.read("faces.parquet")      # any table mien wrote, provenance in attrs["provenance"]
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np
import pandas as pd

from mien.options import PHOTO_LANDMARKS, VIDEO_LANDMARKS, analyzer_options, video_options
from mien.io.images import ImageError, ImageLike, expand_each
from mien.wording import counted

Inputs = Union[ImageLike, Iterable[ImageLike]]


def _items(inputs: Inputs) -> tuple[list, list[str]]:
    """Paths (folders and globs expanded), arrays and PIL images, in order; and a line for each folder without
    images."""
    from PIL import Image

    if isinstance(inputs, (str, os.PathLike, np.ndarray, Image.Image)):
        inputs = [inputs]
    items: list = []
    empty: list[str] = []
    for item in inputs:
        if isinstance(item, (str, os.PathLike)):
            found, lines = expand_each([item])
            items += found
            empty += lines
        else:
            items.append(item)
    return items, empty


def _rules(expressions: Any):
    """A `RuleSet` from a rules file path (checked before any work), a RuleSet, or None."""
    from mien.expression.rules import RuleSet, load_rules

    if expressions is None or isinstance(expressions, RuleSet):
        return expressions
    return load_rules(expressions)


def analyze(inputs: Inputs, landmarks: str = PHOTO_LANDMARKS, progress: bool = True, expressions: Any = None,
            reference: str | os.PathLike | pd.DataFrame | None = None, **options: Any) -> pd.DataFrame:
    """Analyse images (paths, folders, globs, numpy RGB arrays, PIL images) into one tidy DataFrame.

    Options are `AnalyzerOptions` fields (`mode`, `min_score`, `expression_prior`, `attributes`...),
    with the CLI's defaults. Inputs that cannot be read never raise: they are listed in
    `df.attrs["errors"]` (one line each) and warned about once. `df.attrs["provenance"]` says how the
    table was made. `expressions`: a rules file (or `mien.expression.rules.RuleSet`) of custom
    expressions, one `custom_<name>` column each; a bad file raises `RulesError` before any work.
    `reference`: per-person neutral calibration of the result (as `calibrate`); a list that cannot be read raises
    `NeutralReferenceError` before any work.
    """
    from rich.progress import track

    from mien.images_run import ParallelAnalyzer, default_pipelines
    from mien.io.table import faces_to_arrow, arrow_to_frame
    from mien.provenance import analysis_provenance, file_sha256

    settings = analyzer_options(**options)
    rules = _rules(expressions)
    references = _references(reference)
    items, errors = _items(inputs)
    total = len(items) + len(errors)  # a folder without images counts as one input that failed
    frames, checksums = [], []
    with ParallelAnalyzer(settings, default_pipelines(len(items))) as pipelines:
        results = track(pipelines.run(items), total=len(items), description="analysing",
                        disable=not progress or len(items) < 2)
        for k, (item, _, faces) in enumerate(results):
            name = str(item) if isinstance(item, Path) else f"<image {k}>"
            if isinstance(faces, ImageError):
                errors.append(f"{name}: {faces}")
                continue
            frames.append(faces)
            if isinstance(item, Path) and item.is_file():
                checksums.append({"source": name, "sha256": file_sha256(item)})
    rows = faces_to_arrow(frames, landmarks=landmarks, attributes=settings.attributes)
    table = arrow_to_frame(rows if rules is None else rules.add_to_arrow(rows))
    table.attrs["errors"] = errors
    custom = {} if rules is None else {"expressions": rules.provenance()}
    table.attrs["provenance"] = analysis_provenance("images", settings, checksums, landmarks=landmarks, **custom)
    if errors:
        warnings.warn(f"mien.analyze: {len(errors)} of {counted(total, 'input')} could not be read "
                      f"(first: {errors[0]}); see df.attrs['errors']", stacklevel=2)
    if references is not None:
        table = _calibrated_photos(table, references, _where(reference), stacklevel=3)
    return table


def _references(reference: str | os.PathLike | pd.DataFrame | None) -> pd.DataFrame | None:
    """A reference list (`mien.expression.neutral.read_references`) from a path or DataFrame, read before any work."""
    from mien.expression.neutral import read_references

    if reference is None or isinstance(reference, pd.DataFrame):
        return reference
    return read_references(reference)


def _where(reference: str | os.PathLike | pd.DataFrame | None) -> str:
    return "reference" if isinstance(reference, pd.DataFrame) else str(reference)


def _calibrated_photos(table: pd.DataFrame, references: pd.DataFrame, where: str, stacklevel: int) -> pd.DataFrame:
    """`table` with per-person calibrated columns and the reference in its provenance; a warning per person left
    uncalibrated."""
    from mien.expression.neutral import calibrate as calibrate_table, people_without_rest

    for line in people_without_rest(table, references, where):
        warnings.warn(line, stacklevel=stacklevel)
    out = calibrate_table(table, references)
    out.attrs = dict(table.attrs)
    record = dict(table.attrs.get("provenance") or {})
    record["calibration"] = {"reference": where, "people": int(references["person"].nunique()),
                             "method": "mien.expression.neutral, per person"}
    out.attrs["provenance"] = record
    return out


def analyze_video(source: str | os.PathLike | int, landmarks: str = VIDEO_LANDMARKS, every: int = 1,
                  fps: float | None = None, start_s: float = 0.0, end_s: float | None = None,
                  progress: bool = True, expressions: Any = None, calibrate: str | None = None,
                  **options: Any) -> pd.DataFrame:
    """Every analysed frame's rows of a video file, image sequence, camera or stream, as a DataFrame.

    Options are `AnalyzerOptions` fields; sampling as `mien video` (`every`, `fps`, `start_s`,
    `end_s`); `expressions` as in `analyze`; `calibrate`: per-track neutral calibration as `mien video --calibrate`
    ("0-5s" or "auto", checked before any work). `attrs` holds `segments`, `events` and `tracks` (DataFrames, as the
    CLI's timeline files), `warnings` and `provenance`. Raises `mien.video.reader.VideoError` if the source
    cannot be opened at all.
    """
    from rich.console import Console

    from mien.expression.neutral import parse_window
    from mien.io.table import read_table
    from mien.provenance import read_provenance
    from mien.video.reader import open_video
    from mien.video.run import analyze_video as run_video, timeline_paths

    settings = video_options(**options)
    rules = _rules(expressions)
    if calibrate is not None:
        parse_window(calibrate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.parquet"
        with open_video(source, every=every, fps=fps, start_s=start_s, end_s=end_s) as reader:
            run = run_video(reader, out, settings, landmarks=landmarks, quiet=not progress, rules=rules,
                            console=Console(stderr=True, quiet=not progress))
        table = read_table(out) if out.exists() else pd.DataFrame()
        table.attrs["provenance"] = read_provenance(out) if out.exists() else None
        for name, path in timeline_paths(out).items():
            table.attrs[name] = pd.read_csv(path) if path.exists() else pd.DataFrame()
    table.attrs["warnings"] = list(run.warnings)
    if calibrate is not None and len(table):
        table = _calibrated_tracks(table, calibrate)
    return table


def _calibrated_tracks(table: pd.DataFrame, window: str) -> pd.DataFrame:
    """`table` calibrated per track (`calibrate_video_table`), the rest windows in `attrs["calibration"]` and the
    provenance."""
    from mien.expression.neutral import calibrate_video_table

    out, record = calibrate_video_table(table, window)
    out.attrs = dict(table.attrs)
    out.attrs["provenance"] = record
    out.attrs["calibration"] = {"window": window, "rest_windows": {int(k): tuple(v) for k, v in
                                                                   record["calibration"]["rest_windows"].items()}}
    return out


def calibrate(table: pd.DataFrame, reference: str | os.PathLike | pd.DataFrame | None = None,
              window: str | None = None) -> pd.DataFrame:
    """Per-person neutral calibration (`mien.expression.neutral`). Photos: `reference` is a CSV
    `person,path,neutral`, a folder with one sub-folder per person holding their photos (the neutral one(s) named
    `neutral*`), or such a DataFrame.
    Video tables: `window` is each track's rest, "START-END" seconds ("0-5s") or "auto" (the track's most neutral
    two seconds). Returns a copy with `expr_<class>_cal`, `expression_cal`, `AUxx_p_cal`, `AUxx_cal`,
    `custom_<name>_cal` (the rules its provenance records), `valence_cal`, `arousal_cal` and `person` beside the
    uncalibrated columns (video: the rest window per track in
    `attrs["calibration"]`). A person whose neutral photo is not in the table, or shows no face, stays uncalibrated
    with a warning naming them."""
    if (reference is None) == (window is None):
        raise ValueError("give reference (photos) or window (video tables), not both or neither")
    if window is not None:
        return _calibrated_tracks(table, window)
    references = _references(reference)
    assert references is not None
    return _calibrated_photos(table, references, _where(reference), stacklevel=3)


def read(path: str | os.PathLike) -> pd.DataFrame:
    """Any table mien wrote (Parquet, CSV, JSON Lines, or a `mien batch` output folder), with its
    provenance in `attrs["provenance"]`."""
    from mien.io.table import read_table
    from mien.provenance import read_provenance

    path = Path(path)
    if path.is_dir():
        from mien.batch import read_results

        table = read_results(path)
    else:
        table = read_table(path)
    table.attrs["provenance"] = read_provenance(path)
    return table
