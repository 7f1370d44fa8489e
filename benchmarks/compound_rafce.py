"""RAF-CE's 14 compound expressions: the built-in rule sets against mien's blends and a plain learned baseline.

Usage: python benchmarks/compound_rafce.py [--data ../shared/datasets/rafce] [--json benchmarks/compound_rafce.json]
Measures every face of train/ and valid/ as `mien eval-rules` does, then scores on valid: the `compound` rules
(the compound's two basic expressions), the `compound-facs` rules (Du et al. 2014's prototype AUs) and a
multinomial logistic regression on the same inputs (log expression probabilities and AU probabilities), fitted on
train with its L2 strength chosen on a hash-free split of train (every fifth face).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.expression.au_eval import measure_faces, read_coded
from mien.expression.au_model import occurrence
from mien.expression.aus import AU_NAMES
from mien.expression.compound_eval import rule_label, rules_report
from mien.expression.rules import load_rules


def measured(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    coded = read_coded(folder, coded_only=False)
    faces = measure_faces(coded.paths, progress=False)
    au_probs = np.full((len(coded.paths), len(AU_NAMES)), np.nan, np.float32)
    found = faces.found
    au_probs[found] = occurrence(faces.blendshapes[found], faces.landmarks[found], faces.aligned[found],
                                 faces.logits[found])
    return faces.probabilities, au_probs, coded.compounds


def features(probs: np.ndarray, au_probs: np.ndarray) -> np.ndarray:
    return np.concatenate([np.log(np.clip(probs, 1e-6, 1.0)), au_probs], 1).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, l2: float, steps: int = 3000):
    """Multinomial logistic regression by full-batch gradient descent on standardised inputs."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    weights, bias, onehot = np.zeros((z.shape[1], classes)), np.zeros(classes), np.eye(classes)[y]
    for _ in range(steps):
        logits = z @ weights + bias
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = (p - onehot) / len(y)
        weights -= 0.5 * (z.T @ grad + l2 * weights)
        bias -= 0.5 * grad.sum(0)
    return lambda x_new: ((x_new - mean) / std) @ weights + bias


def scores_of(logits: np.ndarray, y: np.ndarray, names: list[str]) -> dict:
    order = np.argsort(-logits, 1)
    recall = [float(np.mean(order[y == k, 0] == k)) for k in range(len(names)) if (y == k).any()]
    return {"top1": round(float(np.mean(order[:, 0] == y)), 3),
            "top3": round(float(np.mean((order[:, :3] == y[:, None]).any(1))), 3),
            "mean_recall": round(float(np.mean(recall)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/datasets/rafce")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    train, valid = measured(args.data / "train"), measured(args.data / "valid")
    results = {}
    for name in ("compound", "compound-facs"):
        rules = load_rules(name)
        for split, (probs, au_probs, labels) in (("train", train), ("valid", valid)):
            report = rules_report(rules, probs, au_probs, labels)
            results[f"rules {name}, {split}"] = {k: report[k] for k in ("faces", "top1", "top3", "mean_recall")}
            results[f"majority, {split}"] = report["majority"]
    names = [rule_label(r.name) for r in load_rules("compound").rules]

    def usable(data):
        probs, au_probs, labels = data
        ok = ~np.isnan(probs).any(1) & np.isin(labels, names)
        return features(probs[ok], au_probs[ok]), np.array([names.index(c) for c in np.asarray(labels)[ok]])

    x, y = usable(train)
    held = np.arange(len(y)) % 5 == 0
    l2 = max((1e-3, 1e-2, 1e-1), key=lambda v: scores_of(fit_logistic(x[~held], y[~held], len(names), v)(x[held]),
                                                           y[held], names)["top1"])
    model = fit_logistic(x, y, len(names), l2)
    xv, yv = usable(valid)
    results["logistic regression (baseline), valid"] = {"faces": len(yv), "l2": l2, **scores_of(model(xv), yv, names)}
    for key, value in results.items():
        print(json.dumps({"what": key, **value}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
