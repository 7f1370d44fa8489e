"""Per-person neutral calibration on the shared KDEF, scored person-level two-fold.

    mien analyze ../shared/datasets/kdef -o kdef.parquet -q --landmarks none
    python benchmarks/neutral_kdef.py kdef.parquet [--fold 1]

For each half of the people, the population's neutral reading n and the strength come from the other
half. A non-neutral photo is calibrated with the same person's neutral of the same view; a neutral photo
with the same person's neutrals of the other two views (never itself). Prints accuracy (7 KDEF classes)
uncalibrated and calibrated, by view, by class, and the neutral photos that read neutral; the mean AUROC of the
prototype AUs' probabilities uncalibrated and calibrated (`PROTOTYPES`); and the mean log-probabilities and AU
log-odds of all the neutral photos scored (`POPULATION_NEUTRAL`, `POPULATION_AU_NEUTRAL`). `--fold K` scores only the people of
`kdef-foldK` (for an expression model trained on the other fold's people).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mien.datasets.expressions import kdef_person, read_builtin
from mien.expression.neutral import calibrate, rest_of

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


# The AUs of each basic expression's prototype (EMFACS, as in Ekman & Friesen's FACS manual and Du, Tao & Martinez
# 2014), for AUs that some KDEF expression shows: how well an AU's probability picks out the photos of the
# expressions whose prototype has it (AUROC) says whether calibration made the AUs truer.
PROTOTYPES = {"AU01": "sad surprise fear", "AU02": "surprise fear", "AU04": "sad fear anger", "AU05": "surprise fear",
              "AU06": "happy", "AU07": "anger", "AU09": "disgust", "AU10": "disgust", "AU12": "happy", "AU15": "sad",
              "AU23": "anger", "AU26": "surprise fear"}


def scored(table: pd.DataFrame, people: set[str], strength: float, population: np.ndarray,
           au_population: np.ndarray | None = None) -> pd.DataFrame:
    rows = []
    for (person, view), group in table[table.person.isin(people)].groupby(["person", "view"]):
        mine = table[table.person == person]
        for label, references in (("others", mine[(mine.view == view) & (mine.label == "neutral")]),
                                  ("neutral", mine[(mine.view != view) & (mine.label == "neutral")])):
            targets = group[group.label != "neutral"] if label == "others" else group[group.label == "neutral"]
            if targets.empty or references.empty:
                continue
            ref = pd.DataFrame({"person": person, "path": list(references.path) + list(targets.path),
                                "neutral": [True] * len(references) + [False] * len(targets)})
            both = pd.concat([references, targets])
            out = calibrate(both, ref, strength, population, au_population).iloc[len(references):]
            rows += [{"view": view, "label": t, "plain": p == t, "calibrated": c == t,
                      **{f"{au}_p": row[f"{au}_p"] for au in PROTOTYPES},
                      **{f"{au}_p_cal": row[f"{au}_p_cal"] for au in PROTOTYPES}}
                     for (_, row), t, p, c in zip(out.iterrows(), out.label, out.expression, out.expression_cal)]
    return pd.DataFrame(rows)


def prototype_aurocs(result: pd.DataFrame) -> dict:
    """Mean AUROC over `PROTOTYPES` of the plain and calibrated AU probabilities on the non-neutral photos."""
    from scipy.stats import rankdata

    photos = result[result.label != "neutral"]
    means = {}
    for suffix, name in (("_p", "plain"), ("_p_cal", "calibrated")):
        values = []
        for au, labels in PROTOTYPES.items():
            positive = photos.label.isin(labels.split()).to_numpy()
            ranks = rankdata(photos[f"{au}{suffix}"].to_numpy(np.float64))
            n1, n0 = positive.sum(), (~positive).sum()
            values.append((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
        means[name] = round(float(np.mean(values)), 4)
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="mien analyze's table of ../shared/datasets/kdef")
    parser.add_argument("--fold", type=int, choices=(0, 1), default=None,
                        help="score only the people of kdef-foldK (people the model never saw)")
    parser.add_argument("--datasets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    table = pd.read_parquet(args.table)
    table = table[table.face_found].copy()
    if args.fold is not None:
        people = {kdef_person(p) for p in read_builtin(f"kdef-fold{args.fold}", args.datasets).paths}
        table = table[[kdef_person(s) in people for s in table.source]].copy()
    table["path"] = [str(Path(s).resolve()) for s in table.source]
    table["view"] = [Path(s).parts[-3] for s in table.source]
    table["label"] = [Path(s).parts[-2] for s in table.source]
    table["person"] = [kdef_person(s) for s in table.source]
    people = sorted(table.person.unique())
    folds = [set(people[0::2]), set(people[1::2])]
    results = []
    for held, fitted in (folds, folds[::-1]):
        neutral = table[table.person.isin(fitted) & (table.label == "neutral")]
        rest = rest_of(neutral)  # the fitted half's mean readings, as a person's rest is read
        strength = max(STRENGTHS, key=lambda s: scored(table, fitted, s, rest.log_p).calibrated.mean())
        results.append(scored(table, held, strength, rest.log_p, rest.au_log_odds).assign(strength=strength))
    result = pd.concat(results)
    others = result[result.label != "neutral"]
    summary = {
        "strength_per_fold": [float(r.strength.iloc[0]) for r in results],
        "non_neutral_by_view": others.groupby("view")[["plain", "calibrated"]].mean().round(3).to_dict("index"),
        "by_class": result.groupby("label")[["plain", "calibrated"]].mean().round(3).to_dict("index"),
        "neutral_reads_neutral": result[result.label == "neutral"][["plain", "calibrated"]].mean().round(3).to_dict(),
        "au_prototype_auroc": prototype_aurocs(result),
        "people": int(table.person.nunique()),
        "population_neutral": [round(float(v), 3) for v in rest_of(table[table.label == "neutral"]).log_p],
        "population_au_neutral": [round(float(v), 3) for v in rest_of(table[table.label == "neutral"]).au_log_odds],
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
