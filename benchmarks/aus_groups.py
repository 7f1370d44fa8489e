"""AU occurrence results per apparent group on RAF-CE valid: mean AUROC and F1 (at the shipped thresholds)
by apparent age band and by gender presentation, as mien's own attribute networks estimate them.

    python benchmarks/aus_groups.py --data ../shared/datasets/rafce/valid --json benchmarks/aus_rafce_valid/groups.json

Groups are mien's estimates, not self-reported identities; an AU enters a group's mean when the group has at
least 15 coded positives and 15 negatives of it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mien.expression.au_eval import f1_at, measure_faces, read_coded
from mien.expression.au_model import load_model
from mien.expression.aus import AU_NAMES
from mien.expression.crop import mesh_face_image
from mien.expression.openset import auroc
from mien.face.attributes import AttributeEstimator
from mien.face.mesh import MeshEstimator
from mien.io.images import load_image

MIN_PER_GROUP = 15
AGE_BANDS = ((0, 20, "under 20"), (20, 40, "20-39"), (40, 60, "40-59"), (60, 200, "60 and over"))


def group_scores(probs: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, members: np.ndarray,
                 only: list[str] | None = None) -> dict:
    aurocs, f1s, used = [], [], []
    for k, au in enumerate(AU_NAMES):
        t, s = truth[members, k], probs[members, k]
        if t.sum() < MIN_PER_GROUP or (~t).sum() < MIN_PER_GROUP or (only is not None and au not in only):
            continue
        aurocs.append(auroc(s[t], s[~t]))
        f1s.append(f1_at(s, t, float(thresholds[k])))
        used.append(au)
    return {"faces": int(members.sum()), "aus": used,
            "mean_auroc": round(float(np.mean(aurocs)), 3) if used else None,
            "mean_f1": round(float(np.mean(f1s)), 3) if used else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/rafce/valid"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/aus_rafce_valid/groups.json"))
    args = parser.parse_args()
    coded = read_coded(args.data)
    faces = measure_faces(coded.paths)
    probs = faces.au_probabilities()
    ok = faces.found
    ages, female = np.full(len(ok), np.nan), np.full(len(ok), np.nan)
    mesh, attributes = MeshEstimator(), AttributeEstimator()
    for i in np.flatnonzero(ok):
        image, result = mesh_face_image(mesh, load_image(coded.paths[i]).rgb)
        age, p_female = attributes.estimate(image, result.landmarks)
        ages[i], female[i] = age[0, 0], p_female[0]
    mesh.close()
    truth = np.stack([coded.present(au) for au in AU_NAMES], 1)
    thresholds = load_model()["thresholds"]
    valid = ok & ~np.isnan(ages)
    groups = {"all": group_scores(probs, truth, thresholds, valid)}
    for low, high, name in AGE_BANDS:
        groups[f"apparent age {name}"] = group_scores(probs, truth, thresholds, valid & (ages >= low) & (ages < high))
    groups["presents female"] = group_scores(probs, truth, thresholds, valid & (female >= 0.5))
    groups["presents male"] = group_scores(probs, truth, thresholds, valid & (female < 0.5))
    # The same AUs for every group of a grouping (the AUs each of its groups can score), so means compare.
    masks = {f"apparent age {name}": valid & (ages >= low) & (ages < high) for low, high, name in AGE_BANDS}
    masks.update({"presents female": valid & (female >= 0.5), "presents male": valid & (female < 0.5)})
    for grouping in (list(masks)[:4], list(masks)[4:]):
        scored = [g for g in grouping if groups[g]["aus"]]
        common = sorted(set.intersection(*(set(groups[g]["aus"]) for g in scored)))
        for g in scored:
            groups[g]["same_aus"] = {"aus": common, **{k: v for k, v in group_scores(
                probs, truth, thresholds, masks[g], common).items() if k.startswith("mean")}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": str(args.data), "min_per_group": MIN_PER_GROUP, "groups": groups},
                                    indent=1) + "\n")
    for name, g in groups.items():
        same = g.get("same_aus", {})
        print(f"{name:28s} faces {g['faces']:4d}  AUs {len(g['aus']):2d}  AUROC {g['mean_auroc']}  F1 {g['mean_f1']}"
              + (f"  | on the {len(same['aus'])} AUs all its groups score: AUROC {same['mean_auroc']} F1 {same['mean_f1']}"
                 if same else ""))


if __name__ == "__main__":
    main()
