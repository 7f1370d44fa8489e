"""`run_batch`: plan, skip what is already done, run the rest, record every outcome."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mien.batch.dataset import ConfigurationMismatch, check_configuration, write_dataset
from mien.batch.manifest import PARTS, Manifest
from mien.batch.plan import plan_tasks, scan_inputs
from mien.batch.worker import TMP, BatchOptions, batch_provenance
from mien.provenance import fingerprint


@dataclass
class BatchSummary:
    """What a batch run did."""

    planned: int = 0
    skipped: int = 0  # finished by an earlier run (same input checksum, partition intact)
    done: int = 0
    failed: int = 0
    rows: int = 0
    retries: int = 0
    seconds: float = 0.0
    workers: int = 1
    errors: list[str] = field(default_factory=list)  # one line per failed input or task

    @property
    def ok(self) -> bool:
        return not self.errors


def run_batch(inputs: Iterable[str | Path], out_dir: str | Path, options: BatchOptions | None = None,
              workers: int | None = None, ray: str | None = None, shard_size: int = 64, chunk_s: float | None = 300.0,
              retries: int = 2, console: Console | None = None, progress: bool = True) -> BatchSummary:
    """Analyse `inputs` (image files/folders/globs and videos) into Parquet partitions under
    `out_dir/parts/`, recording each task in `out_dir/manifest.jsonl`.

    Exactly once per dataset: re-running skips what finished tasks already cover (by input checksum and
    time range, whatever the shard or chunk size) and runs only what is new; the folder's
    `dataset.json` then names which task owns each input's rows, and readers return only those. A run
    with other options or models than the folder's raises `BatchSetupError`. `ray` runs on a Ray cluster
    ("local", "auto" or an address) with `workers` actors (None: one per CPU of the cluster);
    otherwise a pool of `workers` local processes (None: one per CPU; 1: in this process).
    A task that raises is retried up to `retries` times; bad inputs fail at once with a reason.
    """
    console = console or Console(stderr=True)
    options = options or BatchOptions()
    out = Path(out_dir)
    record = batch_provenance(options)
    try:
        check_configuration(out, record)
    except ConfigurationMismatch as exc:
        raise BatchSetupError(str(exc)) from None
    (out / PARTS).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / PARTS / TMP, ignore_errors=True)  # half-written partitions of a killed run
    manifest = Manifest(out)
    scan = scan_inputs(inputs)
    if options.mode == "crops":  # each image one cropped face: a video has no such images, so it is one failed input
        scan.problems += [(path, "mode 'crops' reads images of one cropped face each; a video needs another mode")
                          for path, *_ in scan.videos]
        scan.videos = []
    plan = plan_tasks(scan, fingerprint(record), manifest.done_entries(), shard_size=shard_size, chunk_s=chunk_s)
    todo = plan.tasks
    summary = BatchSummary(planned=len(plan.tasks) + len(plan.kept), skipped=len(plan.kept))
    for source, reason in plan.problems:
        summary.errors.append(f"{source}: {reason}")
    for task_id in plan.kept:
        summary.rows += manifest.entries[task_id]["rows"]
        summary.errors += manifest.entries[task_id].get("errors", [])
    started = time.perf_counter()
    if todo:
        executor = _executor(options, workers, ray)
        summary.workers = executor.workers
        attempts = {t.task_id: 0 for t in todo}
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("{task.fields[rows]} rows"), console=console, transient=True,
                          disable=not progress) as bar:
                bar_task = bar.add_task(f"tasks ({executor.workers} workers)", total=len(todo), rows=summary.rows)
                queue = list(todo)
                while queue:
                    again = []
                    for task, entry, error in executor.run(queue, str(out)):
                        attempts[task.task_id] += 1
                        if entry is None and attempts[task.task_id] <= retries:
                            summary.retries += 1
                            console.print(f"{task.label}: {error}; retrying", highlight=False)
                            again.append(task)
                            continue
                        if entry is None:
                            entry = task.entry(status="failed", rows=0, errors=[],
                                               error=f"{error} (after {attempts[task.task_id]} attempts)")
                        entry["attempts"] = attempts[task.task_id]
                        manifest.record(entry)
                        if entry["status"] == "done":
                            summary.done += 1
                            summary.rows += entry["rows"]
                            summary.errors += entry["errors"]
                        else:
                            summary.failed += 1
                            summary.errors.append(f"{task.label}: {entry['error']}")
                        bar.update(bar_task, advance=1, rows=summary.rows)
                    queue = again
        finally:
            executor.close()
            shutil.rmtree(out / PARTS / TMP, ignore_errors=True)
            _record_owners(out, record, scan, manifest)
    else:
        _record_owners(out, record, scan, manifest)
    summary.seconds = time.perf_counter() - started
    return summary


def _record_owners(out: Path, record: dict, scan, manifest: Manifest) -> None:
    """Write dataset.json: for each live input, the finished task(s) holding its rows."""
    images: dict[str, tuple[str, str]] = {}
    videos: dict[str, tuple[str, list[str]]] = {}
    by_member: dict[tuple[str, str], str] = {}
    by_video: dict[str, list[tuple[float, str]]] = {}
    for entry in manifest.done_entries():
        if entry["kind"] == "images":
            for path, sha in entry.get("members", []):
                by_member[(path, sha)] = entry["task_id"]  # the latest finished task wins
        else:
            by_video.setdefault(entry["checksum"], []).append((entry["start_s"], entry["task_id"]))
    for path, sha in scan.images:
        if (path, sha) in by_member:
            images[path] = (sha, by_member[(path, sha)])
    for path, sha, _ in scan.videos:
        if sha in by_video:
            videos[path] = (sha, [task_id for _, task_id in sorted(by_video[sha])])
    write_dataset(out, record, images, videos)


class BatchSetupError(RuntimeError):
    """The batch cannot start (Ray missing or unreachable); nothing was run."""


def _executor(options: BatchOptions, workers: int | None, ray: str | None):
    from mien.batch import executors

    if ray:
        if importlib.util.find_spec("ray") is None:
            raise BatchSetupError("Ray is not installed: pip install 'mien[ray]'")
        try:
            return executors.RayExecutor(options, ray, workers)
        except Exception as exc:  # ray.init's many ways of failing: one line for the user
            raise BatchSetupError(f"cannot start or reach the Ray cluster ({ray}): {executors.one_line(exc)}") from None
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        return executors.InlineExecutor(options)
    return executors.ProcessExecutor(options, workers)
