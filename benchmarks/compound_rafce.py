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

from mien.expression.compound_eval import column_report, rules_report
from mien.expression.rules import load_rules
from mien.train.compound import measured


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
    results["compound column (shipped), valid"] = column_report(*valid)
    for key, value in results.items():
        print(json.dumps({"what": key, **value}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
