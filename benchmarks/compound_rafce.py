"""RAF-CE's 14 compound expressions: the default `compound` reading, the built-in rule sets and mien's blends.

Usage: python benchmarks/compound_rafce.py [--data ../shared/datasets/rafce] [--json benchmarks/compound_rafce.json]
Measures every face of train/ and valid/ as `mien eval-rules` does, then scores on valid: the shipped `compound`
reading (`mien.expression.compound`, a logistic regression fitted on train by `python -m mien.train.compound`;
no reading where the face reads neutral, counted as wrong), the `compound` rules (the compound's two basic
expressions) and the `compound-facs` rules (Du et al. 2014's prototype AUs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.expression import compound
from mien.expression.classes import COMPOUNDS
from mien.expression.compound_eval import rules_report
from mien.expression.rules import load_rules
from mien.train.compound import measured, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/datasets/rafce")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    train, valid = measured(args.data / "train", progress=False), measured(args.data / "valid", progress=False)
    results = {}
    for name in ("compound", "compound-facs"):
        rules = load_rules(name)
        for split, (probs, _, au_probs, labels) in (("train", train), ("valid", valid)):
            report = rules_report(rules, probs, au_probs, labels)
            results[f"rules {name}, {split}"] = {k: report[k] for k in ("faces", "top1", "top3", "mean_recall")}
            results[f"majority, {split}"] = report["majority"]
    probs, logits, au_probs, labels = valid
    labelled = np.isin(labels, COMPOUNDS) & ~np.isnan(probs).any(1)
    read = compound.read(logits[labelled], au_probs[labelled], probs[labelled])
    truth = np.array([COMPOUNDS.index(c) for c in np.asarray(labels)[labelled]])
    results["compound column (shipped), valid"] = {"faces": int(labelled.sum()), **scores(read, truth),
                                                   "read_neutral": round(float(np.isnan(read).any(1).mean()), 3)}
    for key, value in results.items():
        print(json.dumps({"what": key, **value}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
