"""Batch throughput: 1 vs 2 workers on the same inputs, local processes and a local Ray cluster.

    python benchmarks/batch.py            # 24 photos + 4 videos of 20 s (640x480, 1-2 faces)

Inputs are generated (public-domain astronaut photo shifted; `mien.video.synthetic` clips), so the
run needs no dataset. Each configuration writes to a fresh output folder; the time is the whole
`run_batch` call (start-up of workers and model loading included). Units of work: photos + video
frames. Scaling efficiency = (throughput with 2 workers / throughput with 1) / 2.
Writes benchmarks/batch_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mien.batch import read_results, run_batch
from mien.video import synthetic

OUT = Path(__file__).with_name("batch_results.json")


def make_inputs(root: Path, photos: int, videos: int, seconds: float) -> int:
    """Write the inputs; returns the units of work (photos + frames)."""
    from skimage.data import astronaut

    face = astronaut()
    (root / "photos").mkdir(parents=True)
    for k in range(photos):
        shifted = np.ascontiguousarray(np.roll(face, 17 * k, axis=1))
        cv2.imwrite(str(root / "photos" / f"p{k:03d}.jpg"), cv2.cvtColor(shifted, cv2.COLOR_RGB2BGR))
    for k in range(videos):
        actors = synthetic.crossing_scene(seconds) if k % 2 else synthetic.faces_grid(1, side=180)
        synthetic.write_video(root / f"v{k}.mp4", synthetic.frames(actors, seconds))
    return photos + videos * int(round(seconds * 30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--chunk-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        units = make_inputs(root, args.photos, args.videos, args.seconds)
        reference = None
        for label, ray, workers in [("local, 1 worker (in process)", None, 1), ("local, 2 processes", None, 2),
                                    ("Ray local, 1 actor", "local", 1), ("Ray local, 2 actors", "local", 2)]:
            out = Path(tmp) / f"out-{len(runs)}"
            began = time.perf_counter()
            summary = run_batch([root], out, workers=workers, ray=ray, shard_size=6, chunk_s=args.chunk_s,
                                progress=False)
            seconds = time.perf_counter() - began
            if ray:
                import ray as ray_module

                ray_module.shutdown()
            rows = read_results(out).sort_values(["source", "frame", "face_id"]).reset_index(drop=True)
            same = reference is None or rows.drop(columns=["task_id"]).equals(reference.drop(columns=["task_id"]))
            reference = rows if reference is None else reference
            runs.append({"config": label, "workers": workers, "ray": bool(ray), "tasks": summary.planned,
                         "rows": summary.rows, "seconds": round(seconds, 2), "units_per_s": round(units / seconds, 2),
                         "same_rows_as_first": bool(same)})
            print(json.dumps(runs[-1]))
    for one, two in ((runs[0], runs[1]), (runs[2], runs[3])):
        two["speedup_vs_1"] = round(two["units_per_s"] / one["units_per_s"], 3)
        two["scaling_efficiency"] = round(two["speedup_vs_1"] / 2, 3)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "command": "python benchmarks/batch.py " + " ".join(sys.argv[1:]),
              "inputs": {"photos": args.photos, "videos": args.videos, "seconds_each": args.seconds,
                         "units": units, "chunk_s": args.chunk_s}, "runs": runs}
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
