"""Derived valence/arousal against RAF-CE valid's annotator votes.

    python benchmarks/affect_rafce.py --data ../shared/datasets/rafce/valid --json benchmarks/affect_rafce.json

Each face's reference point is its 6-emotion vote distribution times the same Russell & Mehrabian (1977)
placement mien uses, so this measures whether mien's reading of the *face* lands where the annotators' votes
put it, not whether the placement itself is right (no valence/arousal-labelled data is available here).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.expression.affect import SOURCE, VALENCE_AROUSAL, valence_arousal
from mien.expression.au_eval import VOTE_CLASSES, measure_faces, read_coded
from mien.expression.aus import estimate_aus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/rafce/valid"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/affect_rafce.json"))
    args = parser.parse_args()
    coded = read_coded(args.data, coded_only=False)
    measured = measure_faces(coded.paths)
    found = measured.found
    predicted = valence_arousal(measured.probabilities[found],
                                estimate_aus(measured.blendshapes[found], measured.landmarks[found]))
    votes = coded.votes[found] / coded.votes[found].sum(1, keepdims=True)
    reference = votes @ np.array([VALENCE_AROUSAL[c] for c in VOTE_CLASSES])
    negative, positive = reference[:, 0] < -0.3, reference[:, 0] > 0.3
    result = {
        "data": str(args.data), "faces": int(found.sum()), "placement": SOURCE,
        "valence_pearson": round(float(np.corrcoef(predicted[:, 0], reference[:, 0])[0, 1]), 3),
        "arousal_pearson": round(float(np.corrcoef(predicted[:, 1], reference[:, 1])[0, 1]), 3),
        "votes_negative_faces": int(negative.sum()),
        "negative_read_negative": round(float((predicted[negative, 0] < 0).mean()), 3),
        "votes_positive_faces": int(positive.sum()),
        "positive_read_positive": round(float((predicted[positive, 0] > 0).mean()), 3),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
