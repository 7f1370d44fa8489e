"""How well `flag_occluded` separates clean faces from covered ones, on UTKFace faces.

    python benchmarks/occlusion.py [--faces 600]

Clean: UTKFace faces as they are (a few wear glasses, beards, hands near the face: the honest
false-positive rate of real photos). Covered: the same faces with a synthetic occluder pasted
over them after the mesh was found: a face-mask shape over nose, cheeks and chin (solid colours
that masks come in, or a printed pattern), or a patch over one cheek or the chin (a hand in a
glove, a phone, a cup). Scores are computed with the mesh of the clean face, as the mesh model
keeps predicting points under an occluder. Prints the rate of each kind flagged at
`OCCLUSION_THRESHOLD` and a threshold sweep; writes benchmarks/occlusion_results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from mien.analyzer import Analyzer
from mien.face.quality import OCCLUSION_THRESHOLD, SKIN_REGIONS, occlusion_scores
from mien.io.images import load_image

ROOT = Path(__file__).resolve().parents[1]
MASK_COLOURS = [(240, 240, 240), (120, 170, 220), (30, 30, 35), (70, 110, 160), (200, 120, 140)]


def _mask(rgb, pts, rng):
    """A face mask: polygon through cheeks, under the eyes, round the chin."""
    outline = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323,
               454, 345, 349, 195, 120, 116]
    out = rgb.copy()
    poly = pts[outline, :2].astype(np.int32)
    if rng.random() < 0.75:
        cv2.fillPoly(out, [poly], MASK_COLOURS[rng.integers(len(MASK_COLOURS))])
    else:  # printed pattern
        pattern = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        tile = cv2.resize(pattern, out.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        mask = np.zeros(out.shape[:2], np.uint8)
        cv2.fillPoly(mask, [poly], 1)
        out[mask > 0] = tile[mask > 0]
    return out


def _patch(rgb, pts, rng):
    """An object over one region (cheek or chin), in a colour that is not skin."""
    region = ["right_cheek", "left_cheek", "chin"][rng.integers(3)]
    centre = pts[list(SKIN_REGIONS[region]), :2].mean(0)
    width = np.ptp(pts[:, 0])
    radius = int(width * rng.uniform(0.15, 0.22))
    out = rgb.copy()
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    cv2.circle(out, tuple(int(c) for c in centre), radius, colour, -1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--faces", type=int, default=600)
    args = parser.parse_args()
    paths = sorted((args.datasets / "utkface").glob("*.jpg"))[: args.faces]
    rng = np.random.default_rng(0)
    scores = {"clean": [], "mask": [], "patch": []}
    with Analyzer(mode="fast", expression=False) as analyzer:
        for path in paths:
            rgb = load_image(path).rgb
            faces = analyzer.analyze(rgb)
            if len(faces) != 1 or not faces.has_mesh[0]:
                continue
            pts = faces.landmarks[:1]
            scores["clean"].append(float(np.nanmax(occlusion_scores(rgb, pts))))
            scores["mask"].append(float(np.nanmax(occlusion_scores(_mask(rgb, pts[0], rng), pts))))
            scores["patch"].append(float(np.nanmax(occlusion_scores(_patch(rgb, pts[0], rng), pts))))
    result = {"faces": len(scores["clean"]), "threshold": OCCLUSION_THRESHOLD,
              "flagged_at_threshold": {k: round(float(np.mean(np.array(v) > OCCLUSION_THRESHOLD)), 3)
                                       for k, v in scores.items()},
              "sweep": {str(t): {k: round(float(np.mean(np.array(v) > t)), 3) for k, v in scores.items()}
                        for t in (15, 20, 25, 30, 35, 40, 50)}}
    print(json.dumps(result, indent=2))
    (ROOT / "benchmarks" / "occlusion_results.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
