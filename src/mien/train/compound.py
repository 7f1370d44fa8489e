"""Fit the `compound` reading (`mien.expression.compound`) on RAF-CE train; report it on RAF-CE valid. Writes the
weights the package ships and registers their SHA-256.

    python -m mien.train.compound --data ../shared/datasets/rafce

numpy only (no torch). The L2 strength is chosen on a fifth of train held out, then the model is refitted on all
of train; valid is only reported. Refit whenever the expression or AU model changes (their outputs are its inputs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.expression import compound
from mien.expression.au_eval import measure_faces, read_coded
from mien.expression.au_model import occurrence
from mien.expression.aus import AU_NAMES
from mien.expression.classes import COMPOUNDS
from mien.expression.compound_eval import ranking_scores, rule_label
from mien.expression.rules import load_rules
from mien.train.aus import register

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights" / "compound.npz"
L2_CHOICES = (1e-3, 1e-2, 1e-1)


def measured(folder: Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(expression probabilities (n, 8), prior-free logits (n, 8), AU probabilities (n, 20), compound labels) of the
    faces of a RAF-CE folder, measured as the pipeline measures a face (NaN rows where no mesh was found)."""
    coded = read_coded(folder, coded_only=False)
    faces = measure_faces(coded.paths, progress=progress)
    au_probs = np.full((len(coded.paths), len(AU_NAMES)), np.nan, np.float32)
    found = faces.found
    au_probs[found] = occurrence(faces.blendshapes[found], faces.landmarks[found], faces.aligned[found],
                                 faces.logits[found])
    return faces.probabilities, faces.logits, au_probs, coded.compounds


def compound_names() -> list[str]:
    """RAF-CE's 14 compounds, in the order of the built-in rule set (which is `COMPOUNDS`' order)."""
    names = [rule_label(rule.name) for rule in load_rules("compound").rules]
    if tuple(names) != COMPOUNDS:
        raise ValueError(f"the built-in compound rules name {names}, not mien's COMPOUNDS")
    return names


def usable(data: tuple, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and class indices of the measured faces with a mesh and a label among `names`."""
    _, logits, au_probs, labels = data
    ok = ~np.isnan(logits).any(1) & ~np.isnan(au_probs).any(1) & np.isin(labels, names)
    return compound.features(logits[ok], au_probs[ok]), np.array([names.index(c) for c in np.asarray(labels)[ok]])


def choose_l2(x: np.ndarray, y: np.ndarray, classes: int) -> float:
    held = np.arange(len(y)) % 5 == 0
    return max(L2_CHOICES, key=lambda l2: ranking_scores(compound.probabilities(
        compound.fit(x[~held], y[~held], classes, l2), x[held]), y[held])["top1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="RAF-CE root (train/ and valid/)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    names = compound_names()
    x, y = usable(measured(args.data / "train"), names)
    l2 = choose_l2(x, y, len(names))
    params = compound.fit(x, y, len(names), l2)
    np.savez(args.out, names=np.array(names), l2=l2, **{k: v.astype(np.float32) for k, v in params.items()})
    xv, yv = usable(measured(args.data / "valid"), names)
    digest = register(args.out, "compound") if args.out.resolve() == WEIGHTS else ""
    print(json.dumps({"train_faces": len(y), "l2": l2, "valid_faces": len(yv),
                      "valid": ranking_scores(compound.probabilities(params, xv), yv), "sha256": digest}))


if __name__ == "__main__":
    main()
