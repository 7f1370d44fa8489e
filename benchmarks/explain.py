"""Do the expression model's heatmaps look where the theory says? FER+ test faces, by class.

    python benchmarks/explain.py [--per-class 60] [--heatmaps int8]

For FER+ test faces (majority protocol) that the model classifies correctly, up to
`--per-class` per class: the occlusion heatmap of the predicted class (`mien.explain.saliency`),
its mass share in each facial region (`mien.explain.regions`), and the share in the regions
where that expression's action units act (`EXPECTED_REGIONS`) against those regions' share of
the crop's area (what a heatmap spread evenly would give). Also checks that heatmaps are
deterministic. Faces are chosen by the shipped (int8) classifier; heatmaps come from the float network it
was quantized from, as `Analyzer.explainer` makes them (`--heatmaps int8`: from the int8 model itself, for
comparison). Writes benchmarks/explain_results.json (`--out` for another file).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mien.explain.rationale import EXPECTED_REGIONS
from mien.explain.regions import REGION_NAMES, area_shares, region_map, region_shares
from mien.explain.saliency import occlusion_heatmap
from mien.expression.classes import EXPRESSIONS
from mien.expression.classifier import ExpressionClassifier
from mien.expression.crop import mesh_face_image
from mien.face.mesh import MeshEstimator
from mien.io.images import load_image
from mien.datasets.expressions import read_builtin
from mien.models import resolve

ROOT = Path(__file__).resolve().parents[1]


def _face(mesh: MeshEstimator, classifier: ExpressionClassifier, path: Path):
    """(crop, blendshapes, landmarks) of a FER+ face crop as the classifier reads it, or None without a mesh."""
    big, found = mesh_face_image(mesh, load_image(path).rgb)
    if not found.found[0]:
        return None
    return classifier.crop(big, found.landmarks[0]), found.blendshapes[0], found.landmarks[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--heatmaps", choices=("float", "int8"), default="float",
                        help="network the heatmaps run on (the product uses the float one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "explain_results.json")
    args = parser.parse_args()
    labelled = read_builtin("ferplus-test-majority", args.datasets)
    classifier = ExpressionClassifier()
    explainer = ExpressionClassifier(resolve("expression_float")) if args.heatmaps == "float" else classifier
    mesh = MeshEstimator(workers=1)
    counts = {c: 0 for c in EXPRESSIONS}
    shares = {c: [] for c in EXPRESSIONS}
    areas = {c: [] for c in EXPRESSIONS}
    seconds, repeat_ok = [], True
    for path, label in zip(labelled.paths, labelled.labels):
        name = EXPRESSIONS[label]
        if counts[name] >= args.per_class or not EXPECTED_REGIONS[name]:
            continue
        face = _face(mesh, classifier, path)
        if face is None:
            continue
        crop, blend, landmarks = face
        if classifier.predict(crop[None], blend[None])[0].argmax() != label:
            continue
        started = time.perf_counter()
        heat, _ = occlusion_heatmap(explainer, crop, blend, target=int(label))
        seconds.append(time.perf_counter() - started)
        if counts[name] < 3:
            repeat_ok &= bool(np.array_equal(heat, occlusion_heatmap(explainer, crop, blend, target=int(label))[0]))
        labels = region_map(landmarks, classifier.input_size)
        shares[name].append(region_shares(heat, labels))
        areas[name].append(area_shares(labels))
        counts[name] += 1
    mesh.close()
    result = {"heatmaps": args.heatmaps, "faces": counts, "deterministic": repeat_ok, "ms_per_heatmap": round(1000 * float(np.median(seconds)), 1),
              "classes": {}}
    for name in EXPRESSIONS:
        if not shares[name]:
            continue
        expected = EXPECTED_REGIONS[name]
        heat_in = np.array([sum(s[r] for r in expected) for s in shares[name]])
        area_in = np.array([sum(a[r] for r in expected) for a in areas[name]])
        result["classes"][name] = {
            "faces": len(heat_in), "expected_regions": list(expected),
            "heat_share_in_expected": round(float(heat_in.mean()), 3),
            "area_share_of_expected": round(float(area_in.mean()), 3),
            "lift": round(float(heat_in.mean() / area_in.mean()), 2),
            "faces_above_chance": round(float((heat_in > area_in).mean()), 3),
            "mean_share_by_region": {r: round(float(np.mean([s[r] for s in shares[name]])), 3) for r in REGION_NAMES},
        }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
