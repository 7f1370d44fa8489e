"""RAF-CE's 14 compound expressions: the default `compound` reading, the built-in rule sets and mien's blends.

Usage: python benchmarks/compound_rafce.py [--data ../shared/datasets] [--json benchmarks/compound_rafce.json]
Measures every face of RAF-CE train/ and valid/ as `mien eval-rules` does, then scores on valid: the shipped
`compound` reading (`mien.expression.compound`, fitted by `python -m mien.train.compound`; no reading where the face
reads neutral, counted as wrong), the `compound` rules (the compound's two basic expressions) and the
`compound-facs` rules (Du et al. 2014's prototype AUs). Then how often the `compound` column names a compound where
there is none: RAF-DB test's basic faces (measured the same way; those not read neutral) and the shared KDEF's
posed basic expressions (`mien.analyze` on the whole photos), per expression, at the default share of compounds
and the balanced one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.datasets.expressions import read_class_folders
from mien.expression import compound
from mien.expression.classes import EXPRESSIONS
from mien.expression.compound_eval import column_report, rules_report
from mien.expression.openset import auroc
from mien.expression.rules import load_rules
from mien.train.compound import emotional, measured, measured_paths

BASIC = ("happy", "surprise", "sad", "anger", "disgust", "fear")


def named_shares(names: list, expressions: np.ndarray) -> dict:
    """Share of faces named a compound, over all of them and per basic expression."""
    named = np.array([n is not None for n in names])
    return {"faces": len(named), "named": round(float(named.mean()), 3),
            **{e: round(float(named[expressions == e].mean()), 3) for e in BASIC if (expressions == e).any()}}


def gate_odds(data: tuple) -> np.ndarray:
    """The gate's log-odds (equal shares) for the measured faces not read neutral."""
    ok = emotional(data)
    gate = compound.load_model()[2]
    return compound.gate_log_odds(gate, compound.features(data[1][ok], data[2][ok]), 0.5)


def basic_faces(rafdb: Path, compound_valid: tuple) -> dict:
    test, _ = read_class_folders(rafdb / "test", "rafdb-test")
    probs, logits, au_probs = measured_paths(test.paths, progress=False)
    ok = emotional((probs, logits, au_probs))
    truth = np.array([EXPRESSIONS[k] for k in test.labels])[ok]
    out = {"gate AUROC, RAF-CE valid against these": round(auroc(gate_odds(compound_valid),
                                                                 gate_odds((probs, logits, au_probs))), 3)}
    for prior in ("natural", "balanced"):
        joint = compound.read(logits[ok], au_probs[ok], probs[ok], compound.compound_share(prior))
        out[prior] = named_shares(compound.named(joint)[0], truth)
    return out


def kdef(root: Path) -> dict:
    import mien

    out = {}
    for prior in ("natural", "balanced"):
        table = mien.analyze(sorted(root.glob("*/*/*.jpg")), progress=False, expression_prior=prior)
        table = table[table.face_found].drop_duplicates("source")
        truth = table.source.map(lambda s: Path(s).parent.name).to_numpy()
        view = table.source.map(lambda s: Path(s).parent.parent.name).to_numpy()
        emotional_rows = (table.expression != "neutral").to_numpy()
        names = [None if not isinstance(c, str) else c for c in table["compound"]]
        out[prior] = {"read emotional": named_shares(np.array(names, object)[emotional_rows].tolist(),
                                                     truth[emotional_rows]),
                      **{f"view {v}": named_shares([n for n, w in zip(names, view) if w == v], truth[view == v])
                         for v in ("S", "HL", "HR")}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/datasets")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rafce = args.data / "rafce"
    train, valid = measured(rafce / "train", progress=False), measured(rafce / "valid", progress=False)
    results = {}
    for name in ("compound", "compound-facs"):
        rules = load_rules(name)
        for split, (probs, _, au_probs, labels) in (("train", train), ("valid", valid)):
            report = rules_report(rules, probs, au_probs, labels)
            results[f"rules {name}, {split}"] = {k: report[k] for k in ("faces", "top1", "top3", "mean_recall")}
            results[f"majority, {split}"] = report["majority"]
    results["compound column (shipped), valid"] = column_report(*valid)
    results["named a compound, RAF-DB test basic faces read emotional"] = basic_faces(args.data / "rafdb", valid)
    results["named a compound, KDEF posed basic expressions"] = kdef(args.data / "kdef")
    for key, value in results.items():
        print(json.dumps({"what": key, **value}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
