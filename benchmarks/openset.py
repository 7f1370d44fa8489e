"""Open-set (`unknown`) and blend outcomes of the expression model: fit on valid, measure on held-out data.

    python benchmarks/openset.py --fit                      # fit thresholds on valid, write mien/data/openset.json
    python benchmarks/openset.py --excluded runs/expr-nocontempt/expression.onnx --class contempt

1. `unknown`: energy threshold keeping 95% of FER+ valid faces (majority protocol). AUROC on
   FER+ test of in-distribution faces (majority protocol) against the faces whose most-voted
   FER+ label is "unknown" (annotators could not name the expression), for energy and for the
   top probability (MSP).
2. With `--excluded`: a model trained without one class (`mien train --exclude CLASS`); AUROC of
   telling that unseen class's faces (FER+ test all faces + AffectNet-8 valid) from the others.
3. Blends: on FER+ (all faces), annotators "split" on a face when its two most-voted emotions
   each have at least 30% of the emotion votes. `BLEND_MIN` is chosen on valid so that blends are
   called about as often as annotators split; precision and recall of "predicted blend = the
   annotators' split pair" are reported on test.
Writes benchmarks/openset_results.json.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from mien.expression.calibration import softmax
from mien.expression.classes import EXPRESSIONS, PRIORS
from mien.expression.classifier import ExpressionClassifier
from mien.expression.openset import auroc, energy
from mien.train.cache import cache_for_classifier
from mien.datasets.expressions import read_builtin

ROOT = Path(__file__).resolve().parents[1]
SPLIT_SHARE = 0.3
BLEND_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def _cached(name: str, datasets: Path, cache: Path, classifier: ExpressionClassifier) -> dict:
    return cache_for_classifier(read_builtin(name, datasets), cache, classifier.input_size, classifier.colour,
                                classifier.render_rule)


def _scores(classifier: ExpressionClassifier, data: dict) -> tuple[np.ndarray, np.ndarray]:
    logits = classifier.logits(data["crops"], data["blendshapes"])
    return energy(logits, classifier.temperature), softmax(logits, classifier.temperature)


def _unknown_faces(datasets: Path, split: str) -> list[Path]:
    """FER+ faces whose most-voted label is "unknown"."""
    root = datasets / "ferplus"
    with open(root / f"{split}_votes.csv", newline="") as handle:
        return [root / split / row[0] for row in csv.reader(handle) if np.argmax(np.array(row[2:12], float)) == 8]


def _unknown_cache(datasets: Path, cache: Path, split: str, classifier: ExpressionClassifier) -> dict:
    from mien.datasets.expressions import LabelledSet

    paths = _unknown_faces(datasets, split)
    labelled = LabelledSet(f"ferplus-{split}-unknown", paths, np.full((len(paths), 8), 1 / 8, np.float32))
    return cache_for_classifier(labelled, cache, classifier.input_size, classifier.colour, classifier.render_rule)


def _blend_agreement(probs: np.ndarray, targets: np.ndarray, min_second: float) -> dict:
    top2 = np.argsort(-probs, 1)[:, :2]
    predicted = probs[np.arange(len(probs)), top2[:, 1]] >= min_second
    votes2 = np.argsort(-targets, 1)[:, :2]
    split = targets[np.arange(len(targets)), votes2[:, 1]] >= SPLIT_SHARE
    same_pair = np.sort(top2, 1) == np.sort(votes2, 1)
    same_pair = same_pair.all(1)
    hits = predicted & split & same_pair
    precision = hits.sum() / max(predicted.sum(), 1)
    recall = hits.sum() / max(split.sum(), 1)
    return {"min_second": min_second, "predicted_blends": int(predicted.sum()), "annotator_splits": int(split.sum()),
            "precision": round(float(precision), 3), "recall": round(float(recall), 3),
            "f1": round(float(2 * precision * recall / max(precision + recall, 1e-9)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "expr")
    parser.add_argument("--fit", action="store_true", help="write the fitted thresholds into the package")
    parser.add_argument("--excluded", type=Path, help="ONNX model trained with --exclude CLASS")
    parser.add_argument("--class", dest="held_out", default="contempt")
    args = parser.parse_args()
    out_path = ROOT / "benchmarks" / "openset_results.json"
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    fitted = {}
    shipped_model = ExpressionClassifier()  # its input size and colour decide how the cached crops are read
    valid_m = _cached("ferplus-valid-majority", args.datasets, args.cache, shipped_model)
    test_m = _cached("ferplus-test-majority", args.datasets, args.cache, shipped_model)
    unknown_test = _unknown_cache(args.datasets, args.cache, "test", shipped_model)
    valid = _cached("ferplus-valid", args.datasets, args.cache, shipped_model)
    test = _cached("ferplus-test", args.datasets, args.cache, shipped_model)
    for prior in PRIORS:  # the prior shifts the logits: each gets its own thresholds
        classifier = ExpressionClassifier(prior=prior)
        valid_energy, _ = _scores(classifier, valid_m)
        threshold = float(np.percentile(valid_energy, 5))
        test_energy, test_probs = _scores(classifier, test_m)
        unknown_energy, unknown_probs = _scores(classifier, unknown_test)
        _, valid_probs = _scores(classifier, valid)
        _, all_test_probs = _scores(classifier, test)
        grid = [_blend_agreement(valid_probs, valid["targets"], m) for m in BLEND_GRID]
        # Blend as often as annotators split (best F1 would call almost half of all faces blends).
        best = min(grid, key=lambda g: abs(g["predicted_blends"] - g["annotator_splits"]))
        result.setdefault("priors", {})[prior] = {
            "unknown": {
                "threshold_energy": round(threshold, 4), "fitted_on": "ferplus-valid-majority (95% kept)",
                "test_in_distribution": len(test_energy), "test_unknown_faces": len(unknown_energy),
                "auroc_energy": round(auroc(test_energy, unknown_energy), 3),
                "auroc_msp": round(auroc(test_probs.max(1), unknown_probs.max(1)), 3),
                "in_distribution_called_unknown": round(float((test_energy < threshold).mean()), 3),
                "unknown_faces_called_unknown": round(float((unknown_energy < threshold).mean()), 3),
            },
            "blends": {"split_definition": f"two most-voted emotions each >= {SPLIT_SHARE:.0%} of emotion votes",
                       "valid_grid": grid, "chosen_min_second": best["min_second"],
                       "test": _blend_agreement(all_test_probs, test["targets"], best["min_second"])},
        }
        fitted[prior] = {"unknown_below": round(threshold, 4), "blend_min": best["min_second"]}
    result.pop("unknown", None)
    result.pop("blends", None)

    if args.excluded:
        held = EXPRESSIONS.index(args.held_out)
        model = ExpressionClassifier(args.excluded)
        inside, outside, inside_msp, outside_msp = [], [], [], []
        for name in ("ferplus-test", "affectnet8-valid"):
            data = _cached(name, args.datasets, args.cache, model)
            e, p = _scores(model, data)
            unseen = data["targets"].argmax(1) == held
            inside.append(e[~unseen]), outside.append(e[unseen])
            inside_msp.append(p[~unseen].max(1)), outside_msp.append(p[unseen].max(1))
        result["held_out_class"] = {
            "class": args.held_out, "model": str(args.excluded),
            "faces_seen_classes": int(sum(len(x) for x in inside)), "faces_unseen_class": int(sum(len(x) for x in outside)),
            "auroc_energy": round(auroc(np.concatenate(inside), np.concatenate(outside)), 3),
            "auroc_msp": round(auroc(np.concatenate(inside_msp), np.concatenate(outside_msp)), 3),
        }
    print(json.dumps(result, indent=2))
    out_path.write_text(json.dumps(result, indent=2))
    if args.fit:
        shipped = {"priors": fitted, "made_by": "python benchmarks/openset.py --fit",
                   "fitted_on": "FER+ valid, under each class prior"}
        (ROOT / "src" / "mien" / "data" / "openset.json").write_text(json.dumps(shipped, indent=2) + "\n")


if __name__ == "__main__":
    main()
