"""Fit the `compound` reading (`mien.expression.compound`) on RAF-CE train and its gate (compound or one basic
expression) on RAF-CE train against RAF-DB's held-out basic faces; report both on RAF-CE valid. Writes the weights
the package ships and registers their SHA-256.

    python -m mien.train.compound --data ../shared/datasets/rafce --basic ../shared/datasets/rafdb

numpy only (no torch). The L2 strengths are chosen on a fifth of the training faces held out, then the models are
refitted on all of them; RAF-CE valid is only reported. The basic faces are `rafdb-valid` (the 10% of RAF-DB train
the expression network never trained on), less those that are also RAF-CE photos. Refit whenever the expression or
AU model changes (their outputs are its inputs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.datasets.expressions import RAFDB_VALID_SHARE, hash_split, read_class_folders
from mien.expression import compound
from mien.expression.au_eval import measure_faces, read_coded
from mien.expression.classes import COMPOUNDS, EXPRESSIONS
from mien.expression.compound_eval import ranking_scores, rule_label
from mien.expression.openset import auroc
from mien.expression.rules import load_rules
from mien.train.aus import register

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights" / "compound.npz"
L2_CHOICES = (1e-3, 1e-2, 1e-1)
SAME_PHOTO = 20.0  # mean squared difference of 16x16 grey thumbnails below which two photos are the same


def measured(folder: Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(expression probabilities (n, 8), prior-free logits (n, 8), AU probabilities (n, 20), compound labels) of the
    faces of a RAF-CE folder, measured as the pipeline measures a face (NaN rows where no mesh was found)."""
    coded = read_coded(folder, coded_only=False)
    return (*measured_paths(coded.paths, progress), coded.compounds)


def measured_paths(paths: list[Path], progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expression probabilities, prior-free logits, AU probabilities) of face crops (NaN rows: no mesh)."""
    faces = measure_faces(paths, progress=progress)
    return faces.probabilities, faces.logits, faces.au_probabilities()


def thumbnails(paths: list[Path]) -> np.ndarray:
    """(n, 256) 16x16 grey thumbnails, to find the same photo in two datasets."""
    import cv2

    return np.array([cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (16, 16), interpolation=cv2.INTER_AREA)
                     .astype(np.float32).ravel() for p in paths]).reshape(-1, 256)


def basic_faces(rafdb: Path, compound_photos: list[Path]) -> list[Path]:
    """RAF-DB's held-out basic faces (`rafdb-valid`) that are not also among `compound_photos`."""
    held_out = hash_split(read_class_folders(rafdb / "train", "rafdb")[0], RAFDB_VALID_SHARE, "valid").paths
    theirs, ours = thumbnails(held_out), thumbnails(compound_photos)
    nearest = np.array([((ours - t) ** 2).mean(1).min() for t in theirs])
    return [p for p, d in zip(held_out, nearest) if d >= SAME_PHOTO]


def emotional(data: tuple) -> np.ndarray:
    """Faces with a mesh whose most likely basic expression is not neutral (those the reading applies to)."""
    probs, logits, au_probs = data[:3]
    return (~np.isnan(logits).any(1) & ~np.isnan(au_probs).any(1)
            & (np.nan_to_num(probs).argmax(1) != EXPRESSIONS.index("neutral")))


def compound_names() -> list[str]:
    """RAF-CE's 14 compounds, in the order of the built-in rule set (which is `COMPOUNDS`' order)."""
    names = [rule_label(rule.name) for rule in load_rules("compound").rules]
    if tuple(names) != COMPOUNDS:
        raise ValueError(f"the built-in compound rules name {names}, not mien's COMPOUNDS")
    return names


def subset(data: tuple, keep: np.ndarray) -> tuple:
    """The faces of measured data (`measured` or `measured_paths`) where `keep` is true."""
    return tuple(np.asarray(part)[keep] for part in data)


def usable(data: tuple, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and class indices of the measured faces with a mesh and a label among `names`."""
    _, logits, au_probs, labels = data
    ok = ~np.isnan(logits).any(1) & ~np.isnan(au_probs).any(1) & np.isin(labels, names)
    return compound.features(logits[ok], au_probs[ok]), np.array([names.index(c) for c in np.asarray(labels)[ok]])


def choose_l2(x: np.ndarray, y: np.ndarray, classes: int, score=lambda p, y: ranking_scores(p, y)["top1"]) -> float:
    held = np.arange(len(y)) % 5 == 0
    return max(L2_CHOICES, key=lambda l2: score(compound.probabilities(
        compound.fit(x[~held], y[~held], classes, l2), x[held]), y[held]))


def fit_gate(compound_x: np.ndarray, basic_x: np.ndarray) -> dict[str, np.ndarray]:
    """The gate: class 1 compound, class 0 one basic expression, with the offset that removes the training mix."""
    x = np.concatenate([compound_x, basic_x])
    y = np.r_[np.ones(len(compound_x), int), np.zeros(len(basic_x), int)]
    gate = compound.fit(x, y, 2, choose_l2(x, y, 2, auroc_of_gate))
    gate["offset"] = np.array(-np.log(len(compound_x) / len(basic_x)))
    return gate


def auroc_of_gate(probs: np.ndarray, y: np.ndarray) -> float:
    return auroc(probs[y == 1, 1], probs[y == 0, 1])


def gate_report(gate: dict[str, np.ndarray], compound_x: np.ndarray, basic_x: np.ndarray) -> dict[str, float]:
    """Share named a compound (at the default share) of compound faces and of basic faces, and the AUROC."""
    shown_c = compound.gate_log_odds(gate, compound_x, compound.NATURAL_SHARE) >= 0
    shown_b = compound.gate_log_odds(gate, basic_x, compound.NATURAL_SHARE) >= 0
    odds_c, odds_b = (compound.gate_log_odds(gate, x, 0.5) for x in (compound_x, basic_x))
    return {"compound_named": round(float(shown_c.mean()), 3), "basic_named": round(float(shown_b.mean()), 3),
            "auroc": round(auroc(odds_c, odds_b), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="RAF-CE root (train/ and valid/)")
    parser.add_argument("--basic", type=Path, required=True, help="RAF-DB basic root (train/: its rafdb-valid part)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    names = compound_names()
    train, valid = (measured(args.data / split) for split in ("train", "valid"))
    x, y = usable(train, names)
    params = compound.fit(x, y, len(names), choose_l2(x, y, len(names)))
    photos = read_coded(args.data / "train", False).paths + read_coded(args.data / "valid", False).paths
    basic = measured_paths(basic_faces(args.basic, photos))
    basic_x = compound.features(basic[1][emotional(basic)], basic[2][emotional(basic)])
    gate = fit_gate(usable(subset(train, emotional(train)), names)[0], basic_x)
    np.savez(args.out, names=np.array(names), **{k: v.astype(np.float32) for k, v in params.items()},
             **{f"gate_{k}": np.asarray(v, np.float32) for k, v in gate.items()})
    xv, yv = usable(valid, names)
    digest = register(args.out, "compound") if args.out.resolve() == WEIGHTS else ""
    print(json.dumps({"train_faces": len(y), "basic_faces": len(basic_x), "valid_faces": len(yv),
                      "valid": ranking_scores(compound.probabilities(params, xv), yv),
                      "gate_train": gate_report(gate, x, basic_x), "sha256": digest}))


if __name__ == "__main__":
    main()
