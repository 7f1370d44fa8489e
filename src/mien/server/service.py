"""What the web app does, without HTTP: analyse one image, run queued jobs, keep their files.

Layout of the data folder: `mien.db` (jobs), `uploads/JOB/` (deleted after processing unless
uploads are retained), `results/JOB/` (rows.parquet, annotated images, timelines).
"""

from __future__ import annotations

import queue
import shutil
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from mien.analyzer import Analyzer
from mien.options import AnalyzerOptions, analyzer_options, video_options
from mien.explain.face import explain_faces
from mien.explain.rationale import rationale
from mien.explain.saliency import overlay
from mien.expression.classes import EXPRESSIONS
from mien.io.images import ImageError, LoadedImage, load_image
from mien.io.table import face_records
from mien.report.annotate import annotate, blur_faces, encode_image
from mien.server.settings import ServerSettings
from mien.server.store import Job, JobStore
from mien.wording import counted

RESULT_TABLE = "rows.parquet"


class AnalyzerPool:
    """A few loaded image pipelines shared by request threads (models load once, at start)."""

    def __init__(self, size: int, options: AnalyzerOptions | None = None) -> None:
        self.options = options or analyzer_options()
        self._free: queue.Queue[Analyzer] = queue.Queue()
        self._all = [Analyzer(self.options) for _ in range(max(1, size))]
        for analyzer in self._all:
            self._free.put(analyzer)

    @contextmanager
    def analyzer(self) -> Iterator[Analyzer]:
        analyzer = self._free.get()
        try:
            yield analyzer
        finally:
            self._free.put(analyzer)

    def close(self) -> None:
        for analyzer in self._all:
            analyzer.close()


@dataclass
class ImageResult:
    """Rows of one analysed image and its pictures (JPEG bytes)."""

    rows: list[dict[str, Any]]
    annotated: bytes
    heatmap: bytes | None
    width: int
    height: int
    provenance: dict[str, Any] | None = None


def jpeg(rgb: np.ndarray) -> bytes:
    """JPEG bytes of a result picture (shrunk to 1600 px: results are for looking at)."""
    return encode_image(rgb, max_side=1600, quality=88)


def analyze_image(analyzer: Analyzer, loaded: LoadedImage, explain: bool = True, blur: bool = False,
                  landmarks: str = "none", rules=None) -> ImageResult:
    """Analyse one decoded image: table rows (each with a `rationale`), annotated picture and heatmap."""
    faces = analyzer.analyze_loaded(loaded)
    rgb = loaded.rgb  # may be a shrunk copy: drawing and explaining map coordinates through Faces.scaled_to
    heat = np.zeros(rgb.shape[:2], np.float32) if explain else None
    reasons: list[str | None] = []
    measured = [i for i in range(len(faces)) if faces.has_mesh[i] and not np.isnan(faces.expression[i]).any()]
    explained = {}
    if explain and analyzer.classifier is not None and measured:  # one classifier batch for all faces
        explained = dict(zip(measured, explain_faces(analyzer.explainer, rgb, faces, measured)))
    for i in range(len(faces)):
        if i not in measured:
            reasons.append(None)
        elif i in explained:
            heat = np.maximum(heat, explained[i].image_heat)
            reasons.append(explained[i].text)
        else:
            top = int(np.argmax(faces.expression[i]))
            reasons.append(rationale(EXPRESSIONS[top], float(faces.expression[i, top]), faces.aus[i]))
    shown = blur_faces(rgb, faces) if blur else rgb
    annotated = jpeg(annotate(shown, faces, mesh=not blur))
    heat_jpeg = jpeg(overlay(shown, heat)) if heat is not None else None
    rows = face_records(faces, landmarks=landmarks, rules=rules)
    for row in rows:
        face = row["face_id"]
        row["rationale"] = reasons[face] if row["face_found"] and face < len(reasons) else None
    height, width = loaded.original_size
    return ImageResult(rows, annotated, heat_jpeg, width, height,
                       image_provenance(analyzer, [loaded.source], rules=rules))


def image_provenance(analyzer: Analyzer, sources: list[str], checksums: list[str] | None = None,
                     rules=None) -> dict[str, Any]:
    """The provenance record of rows made by `analyzer` from uploaded images."""
    from mien.provenance import analysis_provenance

    inputs = [{"source": s, "sha256": c} for s, c in zip(sources, checksums or [None] * len(sources))]
    custom = {} if rules is None else {"expressions": rules.provenance()}
    return analysis_provenance("images", analyzer.options, inputs, **custom)


def save_pictures(result: ImageResult, folder: Path, index: int) -> list[str]:
    """Write the annotated picture (and heatmap) of the `index`-th image of a job; returns the file names."""
    names = {f"annotated_{index:04d}.jpg": result.annotated, f"heatmap_{index:04d}.jpg": result.heatmap}
    for name, data in names.items():
        if data is not None:
            (folder / name).write_bytes(data)
    return [name for name, data in names.items() if data is not None]


class JobRunner:
    """Runs queued jobs one at a time on a background thread; jobs left queued or running by a
    stopped server are picked up again when it starts."""

    def __init__(self, settings: ServerSettings, store: JobStore, pool: AnalyzerPool) -> None:
        self.settings, self.store, self.pool = settings, store, pool
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mien-jobs", daemon=True)
        self._cancel: set[str] = set()  # running jobs asked to stop
        self._stopping = False  # the server is shutting down: the running job stops and waits for the next start

    def cancel(self, job_id: str) -> str:
        """Cancel a queued job at once, or a running one at its next image or frame; returns the new status."""
        job = self.store.get(job_id)
        if job is None or job.status not in ("queued", "running"):
            return f"already {job.status}" if job else "missing"
        if job.status == "queued":
            self.store.update(job_id, status="cancelled", message="cancelled before it started")
            shutil.rmtree(upload_dir(self.settings, job_id), ignore_errors=True)  # it will never be read
            return "cancelled"
        self._cancel.add(job_id)
        return "cancelling"

    def _check_cancel(self, job_id: str) -> None:
        if self._stopping:
            raise JobInterrupted(job_id)
        if job_id in self._cancel:
            raise JobCancelled(job_id)

    def start(self) -> None:
        uploads = self.settings.data_dir / "uploads"
        if uploads.is_dir():  # uploads no job owns (a server killed while receiving them): removed
            for folder in uploads.iterdir():
                if self.store.get(folder.name) is None:
                    shutil.rmtree(folder, ignore_errors=True)
        for job in self.store.with_status("queued", "running"):
            self.store.update(job.id, status="queued", progress=0.0, message="restarted")
            self._queue.put(job.id)
        self._thread.start()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self) -> None:
        """Stop within a few seconds: the running job stops at its next image or frame and is queued
        again (it runs from the start when the server next starts)."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while (job_id := self._queue.get()) is not None and not self._stopping:
            job = self.store.get(job_id)
            if job is None or job.status not in ("queued", "running"):
                continue
            self.store.update(job_id, status="running", message="started")
            interrupted = False
            try:
                self.run(job)
            except JobCancelled:
                self._cancel.discard(job_id)
                self.store.update(job_id, status="cancelled", message="cancelled while running")
            except JobInterrupted:  # its upload stays for the next start
                interrupted = True
                self.store.update(job_id, status="queued", progress=0.0, message="interrupted by a shutdown; "
                                  "runs again when the server starts")
            except Exception as exc:  # a job's failure never stops the server
                traceback.print_exc()
                self.store.update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                if not self.settings.retain_uploads and not interrupted:
                    shutil.rmtree(upload_dir(self.settings, job_id), ignore_errors=True)

    def run(self, job: Job) -> None:
        out = result_dir(self.settings, job.id)
        if out.exists():
            shutil.rmtree(out)  # a restarted job starts clean
        out.mkdir(parents=True)
        if job.kind == "video":
            self._run_video(job, out)
        else:
            self._run_images(job, out)

    def _run_images(self, job: Job, out: Path) -> None:
        from mien.io.writer import write_parquet
        from mien.provenance import file_sha256

        frames, files, errors, record = [], [], [], None
        explain = bool(job.options.get("explain", False))
        sources, checksums = [], []
        for k, item in enumerate(job.inputs):
            self._check_cancel(job.id)
            try:
                path = upload_dir(self.settings, job.id) / item["stored"]
                loaded = load_image(path, source=item["name"])
                with self.pool.analyzer() as analyzer:
                    result = analyze_image(analyzer, loaded, explain=explain, blur=self.settings.blur_faces,
                                           rules=self.settings.rules)
                    sources.append(item["name"])
                    checksums.append(file_sha256(path))
                    record = image_provenance(analyzer, sources, checksums, rules=self.settings.rules)
                frames.append(pd.DataFrame(result.rows))
                files += save_pictures(result, out, k)
            except ImageError as exc:
                errors.append(f"{item['name']}: {exc}")
            except Exception as exc:  # one bad file fails its row, not the job; the trace goes to the server log
                traceback.print_exc()
                errors.append(f"{item['name']}: could not be analysed ({type(exc).__name__})")
            self.store.update(job.id, progress=(k + 1) / len(job.inputs), message=f"{k + 1}/{len(job.inputs)} images")
        rows = 0
        if frames:
            table = pd.concat(frames, ignore_index=True)
            if job.options.get("reference"):
                names = [item["name"] for item in job.inputs]
                table, record, missing = _calibrated_photos(table, str(job.options["reference"]), names, record)
                errors += missing
            write_parquet(table, out / RESULT_TABLE, record)
            files.insert(0, RESULT_TABLE)
            rows = len(table)
        status = "done" if frames else "failed"
        self.store.update(job.id, status=status, progress=1.0, files=files, rows=rows, errors=errors,
                          error=None if frames else "no input could be analysed", message="finished")

    def _run_video(self, job: Job, out: Path) -> None:
        from mien.provenance import options_dict
        from mien.video.reader import open_video
        from mien.video.run import analyze_video

        item = job.inputs[0]
        path = upload_dir(self.settings, job.id) / item["stored"]
        every = int(job.options.get("every", 1))
        # Limits that cannot be lied to: real timestamps stop at --max-video-s, and at most 60 frames a
        # second of that are read, whatever the container claims (no duration, 1000 fps...).
        limit = self.settings.max_video_s
        with open_video(path, every=every, end_s=limit) as reader:
            reader.max_frames = int(60 * limit)
            total = reader.info.frame_count
            step = max(1, (total or 100) // 100)

            def progress(frames: int) -> None:
                self._check_cancel(job.id)
                if frames % step == 0:
                    share = min(frames * every / total, 0.99) if total else 0.0
                    self.store.update(job.id, progress=share, message=counted(frames, "frame"))

            options = video_options(**options_dict(self.pool.options))  # the image pipeline's settings
            run = analyze_video(reader, out / RESULT_TABLE, options, on_frame=progress, rules=self.settings.rules)
            if reader.reached_end:
                run.warnings.append(f"{item['name']}: analysed its first {limit:g} s (the --max-video-s limit)")
        if job.options.get("calibrate") and run.rows:
            _calibrate_tracks_in_place(out / RESULT_TABLE, str(job.options["calibrate"]))
        files = [p.name for p in run.outputs]
        errors = [w.replace(str(path), item["name"]) for w in run.warnings]  # the client's name, not our path
        self.store.update(job.id, status="done" if run.rows else "failed", progress=1.0, files=files,
                          rows=run.rows, errors=errors,
                          message=f"{counted(run.frames, 'frame')}, {counted(len(run.tracks), 'person', 'people')}",
                          error=None if run.rows else "no frames could be analysed")


def _calibrated_photos(table: pd.DataFrame, reference: str, names: list[str],
                       record: dict | None) -> tuple[pd.DataFrame, dict, list[str]]:
    """A photo job's table with the per-person calibrated columns (the uploads are `names`), its provenance
    with the reference list, and a line per person left uncalibrated (their neutral upload shows no face)."""
    from mien.expression.neutral import calibrate, people_without_rest, references_for_names

    references = references_for_names(reference, names)
    missing = people_without_rest(table, references, "reference", hint="")
    for name in names:  # the client's file names, not this server's paths
        missing = [line.replace(str(Path(name).resolve()), name) for line in missing]
    table.attrs["provenance"] = record  # its rules are read again calibrated
    out = calibrate(table, references)
    return out, {**(record or {}), "calibration": {"method": "mien.expression.neutral, per person",
                                                   "reference": reference}}, missing


def _calibrate_tracks_in_place(table: Path, window: str) -> None:
    """Add the per-track calibrated columns to a finished video job's table (`mien.expression.neutral`)."""
    from mien.api import read
    from mien.expression.neutral import calibrate_video_table
    from mien.io.writer import write_frame

    out, record = calibrate_video_table(read(table), window)
    staged = table.with_name("calibrated-" + table.name)
    write_frame(out, staged, record)
    staged.replace(table)


class JobCancelled(Exception):
    """A running job was cancelled (raised between images or frames)."""


class JobInterrupted(Exception):
    """The server is stopping; the running job goes back to the queue."""


def upload_dir(settings: ServerSettings, job_id: str) -> Path:
    return settings.data_dir / "uploads" / job_id


def result_dir(settings: ServerSettings, job_id: str) -> Path:
    return settings.data_dir / "results" / job_id
