"""WIDER-mini detector benchmark: recall by level, precision and speed per mode.

Usage: python benchmarks/detector_wider.py [--data ../shared/datasets/wider_mini] [--limit N]
Recall at IoU >= 0.5 per WIDER level set (easy = `e` faces; medium = e+m; hard = e+m+h).
Precision: detections matching no labelled face (ignored `-` faces included) are false positives.
Each mode is measured for the detector alone and for the pipeline, where a detection counts only
if the mesh model confirms a face in it (what `mien analyze` reports).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mien.analyzer import WEAK_SCORE, Analyzer, AnalyzerOptions
from mien.face.blazeface import box_iou
from mien.face.detect import DEFAULT_MIN_SCORE, DetectorOptions, FaceDetector
from mien.io.images import load_image

LEVEL_SETS = {"easy": {"e"}, "medium": {"e", "m"}, "hard": {"e", "m", "h"}}


def load_boxes(path: Path) -> dict[str, list[tuple[np.ndarray, str]]]:
    faces: dict[str, list] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, x, y, w, h, level = line.split()
        x, y, w, h = map(float, (x, y, w, h))
        faces[name].append((np.array([x, y, x + w, y + h], np.float32), level))
    return faces


def evaluate(data: Path, mode: str, limit: int | None, confirm: bool, iou: float = 0.5, legacy: bool = False) -> dict:
    """Run one configuration: the detector alone, or the pipeline (detections the mesh confirms).
    `legacy`: the rows of mien before the real-media work (detector 0.5, detector boxes, no presence check)."""
    gt = load_boxes(data / "boxes.txt")
    names = sorted(gt)[:limit]
    if confirm:
        analyzer = Analyzer(AnalyzerOptions(mode=mode, min_score=0.5 if legacy else DEFAULT_MIN_SCORE))
        import mien.analyzer as pipeline

        analyzer.mesh_boxes = not legacy
        pipeline.WEAK_SCORE = 0.0 if legacy else WEAK_SCORE  # legacy: no presence check for weak detections
        find = lambda rgb: analyzer.analyze(rgb).boxes  # noqa: E731
    else:
        detector = FaceDetector(DetectorOptions(mode=mode))
        find = lambda rgb: detector.detect(rgb)[0]  # noqa: E731
    found = {k: 0 for k in LEVEL_SETS}
    total = {k: 0 for k in LEVEL_SETS}
    n_det = n_tp = 0
    seconds = 0.0
    for name in names:
        image = load_image(data / "images" / name).rgb
        t0 = time.perf_counter()
        boxes = find(image)
        seconds += time.perf_counter() - t0
        gt_boxes = np.stack([b for b, _ in gt[name]])
        levels = [lvl for _, lvl in gt[name]]
        ious = box_iou(gt_boxes, boxes) if len(boxes) else np.zeros((len(gt_boxes), 0))
        hit = ious.max(axis=1) >= iou if len(boxes) else np.zeros(len(gt_boxes), bool)
        for key, allowed in LEVEL_SETS.items():
            mask = np.array([lvl in allowed for lvl in levels])
            total[key] += int(mask.sum())
            found[key] += int((hit & mask).sum())
        n_det += len(boxes)
        n_tp += int((ious.max(axis=0) >= iou).sum()) if len(boxes) else 0
    (analyzer if confirm else detector).close()
    return {
        "mode": mode,
        "what": ("pipeline rows as before (detector 0.5, detector boxes)" if legacy else
                 "pipeline rows (mesh-confirmed)") if confirm else "detector only",
        "images": len(names),
        "recall": {k: round(found[k] / max(total[k], 1), 3) for k in LEVEL_SETS},
        "faces": total,
        "precision": round(n_tp / max(n_det, 1), 3),
        "detections": n_det,
        "ms_per_image": round(1000 * seconds / len(names), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/datasets/wider_mini")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--modes", nargs="+", default=["fast", "auto", "thorough"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = [evaluate(args.data, mode, args.limit, confirm) for confirm in (False, True) for mode in args.modes]
    if "auto" in args.modes:
        results.append(evaluate(args.data, "auto", args.limit, True, legacy=True))
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
