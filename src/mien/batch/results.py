"""Read a batch's output folder as one dataset: pandas, or SQL through DuckDB.

Video chunks are tracked independently, so `track_id` restarts in each chunk; `video_track_id`
joins them: a track that ends on a chunk's last frame continues the track of the next chunk's
first frame whose box overlaps it most (IoU >= 0.3, one-to-one). The join key is
(`task_id`, `track_id`) -> `video_track_id`, also available alone from `track_links`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mien.assignment import min_cost_assignment
from mien.batch.dataset import owned_sources
from mien.batch.manifest import Manifest, partition_path
from mien.face.blazeface import box_iou

_LINK_IOU = 0.3


def _partitions(out_dir: Path) -> list[tuple[dict, Path, set[str] | None]]:
    """(entry, partition, sources it owns) of each finished task holding rows of the dataset: with a
    `dataset.json`, only the owners of the latest run's inputs (sources None: all rows)."""
    owners = owned_sources(out_dir)
    parts = []
    for entry in Manifest(out_dir).done():
        if owners is None:
            parts.append((entry, partition_path(out_dir, entry["task_id"]), None))
        elif entry["task_id"] in owners:
            parts.append((entry, partition_path(out_dir, entry["task_id"]), owners[entry["task_id"]]))
    return parts


def read_results(out_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Every input's rows exactly once, with `task_id`, `chunk` and (for videos) `video_track_id`."""
    out = Path(out_dir)
    frames = []
    for entry, path, sources in _partitions(out):
        wanted = columns if columns is None or "source" in columns else list(columns) + ["source"]
        frame = pd.read_parquet(path, columns=wanted)
        if sources is not None:
            frame = frame[frame["source"].isin(sources)].reset_index(drop=True)
            if columns is not None and "source" not in columns:
                frame = frame.drop(columns="source")
        frame.insert(0, "task_id", entry["task_id"])
        frame.insert(1, "chunk", entry.get("chunk", 0))
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    if "track_id" in table.columns:
        links = track_links(out)
        table = table.merge(links, on=["task_id", "track_id"], how="left")
        table["video_track_id"] = table["video_track_id"].fillna(-1).astype("int64")
    return table


def track_links(out_dir: str | Path) -> pd.DataFrame:
    """(task_id, track_id, video_track_id) for the tracks of every video chunk."""
    out = Path(out_dir)
    cols = ["source", "frame", "track_id", "box_x", "box_y", "box_w", "box_h", "face_found"]
    chunks: dict[str, list[tuple[int, str, pd.DataFrame]]] = {}
    for entry, path, _ in _partitions(out):
        if entry.get("kind") == "video":
            frame = pd.read_parquet(path, columns=cols)
            frame = frame[frame["face_found"] & (frame["track_id"] >= 0)]
            chunks.setdefault(entry["paths"][0], []).append((entry.get("start_s", 0.0), entry["task_id"], frame))
    rows = []
    next_id = 0
    for video in sorted(chunks):
        parts = sorted(chunks[video], key=lambda c: c[0])
        previous: dict[int, int] = {}  # track of the previous chunk -> video track id
        previous_tail = None
        for chunk, task_id, frame in parts:
            current: dict[int, int] = {}
            head = frame[frame["frame"] == frame["frame"].min()] if len(frame) else frame
            matches = _match(previous_tail, head) if previous_tail is not None else {}
            for track in sorted(frame["track_id"].unique()):
                track = int(track)
                if track in matches and matches[track] in previous:
                    current[track] = previous[matches[track]]
                else:
                    current[track], next_id = next_id, next_id + 1
                rows.append((task_id, track, current[track]))
            previous = current
            previous_tail = frame[frame["frame"] == frame["frame"].max()] if len(frame) else None
    return pd.DataFrame(rows, columns=["task_id", "track_id", "video_track_id"]).astype(
        {"track_id": "int64", "video_track_id": "int64"})


def _match(tail: pd.DataFrame, head: pd.DataFrame) -> dict[int, int]:
    """{track in head: track in tail} for boxes that overlap enough."""
    if tail is None or not len(tail) or not len(head):
        return {}
    iou = box_iou(_xyxy(tail), _xyxy(head))
    rows, cols = min_cost_assignment(-iou)
    tail_ids, head_ids = tail["track_id"].to_numpy(), head["track_id"].to_numpy()
    return {int(head_ids[c]): int(tail_ids[r]) for r, c in zip(rows, cols) if iou[r, c] >= _LINK_IOU}


def _xyxy(frame: pd.DataFrame) -> np.ndarray:
    x, y, w, h = (frame[c].to_numpy(np.float64) for c in ("box_x", "box_y", "box_w", "box_h"))
    return np.stack([x, y, x + w, y + h], 1)


def query(out_dir: str | Path, sql: str) -> pd.DataFrame:
    """Run SQL (DuckDB) over the batch: view `faces` holds every row (with `task_id` and
    `video_track_id`), view `manifest` the task records."""
    import duckdb

    out = Path(out_dir)
    con = duckdb.connect()
    parts = _partitions(out)
    manifest = pd.DataFrame(list(Manifest(out).entries.values()))
    for column in ("paths", "members"):
        if column in manifest.columns:
            manifest[column] = manifest[column].map(lambda p: ";".join(m if isinstance(m, str) else m[0] for m in p)
                                                    if isinstance(p, list) else p)
    con.register("manifest_frame", manifest)
    con.execute("CREATE VIEW manifest AS SELECT * FROM manifest_frame")
    if parts:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for _, p, _ in parts)
        owned = pd.DataFrame([(e["task_id"], s) for e, _, sources in parts for s in (sources or [])],
                             columns=["task_id", "source"])
        con.register("links_frame", track_links(out))
        con.register("owned_frame", owned)
        task = r"regexp_extract(f.filename, '([^/\\]+)\.parquet$', 1)"
        only_owned = ("" if all(sources is None for _, _, sources in parts) else
                      f" WHERE EXISTS (SELECT 1 FROM owned_frame o WHERE o.task_id = {task} AND o.source = f.source)")
        con.execute(
            f"CREATE VIEW faces AS SELECT {task} AS task_id, f.* EXCLUDE (filename), "
            f"coalesce(l.video_track_id, -1) AS video_track_id FROM read_parquet([{files}], union_by_name = true, "
            f"filename = true) f LEFT JOIN links_frame l ON l.task_id = {task} AND l.track_id = f.track_id"
            + only_owned)
    else:
        con.execute("CREATE VIEW faces AS SELECT NULL AS task_id WHERE false")
    try:
        return con.execute(sql).df()
    finally:
        con.close()
