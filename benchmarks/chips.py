"""Folders of face chips: what `mien.analyze` reads in `--mode crops` against the default detector.

    python benchmarks/chips.py [--modes crops,auto] [--json out.json]

For FER+ test majority (48 px grey chips, `ferplus` prior) and RAF-DB test (100 px aligned faces, `rafdb` prior):
the share of images that get an expression, the share read right of all images (an unread image counts as wrong)
and of those read, and the seconds per image of the whole call. Where a mode finds several faces in one image, the
most confident reading counts. Needs ../shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import mien
from mien.datasets.expressions import read_builtin
from mien.expression.classes import EXPRESSIONS

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = {"ferplus-test-majority": "ferplus", "rafdb-test": "rafdb"}


def read_chips(name: str, prior: str, mode: str) -> dict:
    labelled = read_builtin(name, DATASETS)
    started = time.perf_counter()
    table = mien.analyze([str(p) for p in labelled.paths], mode=mode, expression_prior=prior, landmarks="none",
                         progress=False)
    seconds = time.perf_counter() - started
    best = table.dropna(subset=["expression"]).sort_values("expression_confidence", ascending=False)
    reading = dict(zip(*best.drop_duplicates("source")[["source", "expression"]].to_numpy().T))
    said = np.array([reading.get(str(p)) for p in labelled.paths], dtype=object)
    read = np.array([isinstance(v, str) for v in said])
    right = np.array([v == EXPRESSIONS[t] for v, t in zip(said, labelled.labels)])
    return {"set": name, "mode": mode, "images": len(said), "read": round(float(read.mean()), 4),
            "right_of_all": round(float(right.mean()), 4), "right_of_read": round(float(right[read].mean()), 4),
            "s_per_image": round(seconds / len(said), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="crops,auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for name, prior in SETS.items():
        for mode in args.modes.split(","):
            results.append(read_chips(name, prior, mode))
            r = results[-1]
            print(f"{name} {mode}: read {100 * r['read']:.1f}%, right of all {100 * r['right_of_all']:.1f}%, "
                  f"of read {100 * r['right_of_read']:.1f}%, {1000 * r['s_per_image']:.1f} ms per image", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
