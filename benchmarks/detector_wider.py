"""WIDER-mini detector benchmark: recall by level, precision and speed per mode.

Usage: python benchmarks/detector_wider.py [--data ../shared/datasets/wider_mini] [--limit N]
Recall at IoU >= 0.5 per WIDER level set (easy = `e` faces; medium = e+m; hard = e+m+h).
Precision: detections matching no labelled face (ignored `-` faces included) are false positives.
Each mode is measured for the detector alone and for the pipeline, where a detection counts only
if the mesh model, CenterFace or BlazeFace full-range confirms a face in it (what `mien analyze` reports).
Beside them: the rows of BlazeFace's whole tile pyramid without CenterFace (mien before it), CenterFace alone
(whole image at 960 and 1280 px) and BlazeFace full-range alone (whole image; whole image and half-size tiles).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from mien.analyzer import Analyzer, AnalyzerOptions
from mien.face.centerface import CenterFace
from mien.face.blazeface import FULL_RANGE, BlazeFace, box_iou, weighted_nms
from mien.face.detect import (CENTERFACE_SCORE_RATIO, DEFAULT_MIN_SCORE, DetectorOptions, FaceDetector, _calibrate_boxes, _inside_tile,
                              _whole_pixels, pyramid_levels)
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


class FullRange:
    """BlazeFace full-range alone over the first `levels` levels of mien's tile pyramid, merged as mien merges."""

    def __init__(self, levels: int, min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.levels, self.min_score = levels, min_score
        self.network = BlazeFace(min_score=0.3, nms_iou=0.3, variant=FULL_RANGE)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        boxes, scores = [], []
        for level in pyramid_levels(width, height)[:self.levels]:
            for x1, y1, x2, y2 in level:
                rows, found = self.network.detect(np.ascontiguousarray(rgb[y1:y2, x1:x2]))
                for row, score in zip(rows, found):
                    box = _whole_pixels(row[:4], x2 - x1, y2 - y1)
                    if _inside_tile(box, x2 - x1, y2 - y1, (x1, y1, x2, y2), width, height):
                        boxes.append(box + [x1, y1, x1, y1])
                        scores.append(score)
        if not boxes:
            return np.zeros((0, 4), np.float32)
        merged, merged_scores = weighted_nms(_calibrate_boxes(np.array(boxes, np.float32)), np.array(scores, np.float32), 0.3)
        return merged[merged_scores >= self.min_score]


class CenterFaceAlone:
    """CenterFace alone over the whole image shrunk to `side` px, at mien's threshold for its detections."""

    def __init__(self, side: int, min_score: float = DEFAULT_MIN_SCORE * CENTERFACE_SCORE_RATIO) -> None:
        self.side, self.min_score, self.network = side, min_score, CenterFace()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        boxes, scores = self.network.detect(rgb, self.side)
        return boxes[scores >= self.min_score, :4]


def evaluate(data: Path, mode: str, limit: int | None, confirm: bool, iou: float = 0.5,
             full_range_levels: int = 0, centerface: bool = True, centerface_side: int = 0) -> dict:
    """Run one configuration: the detector alone, or the pipeline (detections the mesh or a second network
    confirms). `centerface=False`: BlazeFace alone over the whole tile pyramid (mien before CenterFace);
    `centerface_side`: CenterFace alone at that size."""
    gt = load_boxes(data / "boxes.txt")
    names = sorted(gt)[:limit]
    FaceDetector.centerface = centerface
    if full_range_levels:
        find = FullRange(full_range_levels)
    elif centerface_side:
        find = CenterFaceAlone(centerface_side)
    elif confirm:
        analyzer = Analyzer(AnalyzerOptions(mode=mode))
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
    if not (full_range_levels or centerface_side):
        (analyzer if confirm else detector).close()
    what = "pipeline rows (confirmed by the mesh, CenterFace or full-range)" if confirm else "detector only"
    if full_range_levels:
        what = "BlazeFace full-range alone, " + ("whole image" if full_range_levels == 1 else "whole image + half tiles")
    elif centerface_side:
        what = f"CenterFace alone, image shrunk to {centerface_side} px"
    elif not centerface:
        what = "BlazeFace tile pyramid alone (mien before CenterFace): rows confirmed by the mesh or full-range"
    return {
        "mode": mode,
        "what": what,
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
    results.append(evaluate(args.data, "thorough", args.limit, True, centerface=False))
    results += [evaluate(args.data, "-", args.limit, False, centerface_side=side) for side in (960, 1280)]
    results += [evaluate(args.data, "-", args.limit, False, full_range_levels=n) for n in (1, 2)]
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
