"""Fit the AU occurrence model (`mien.expression.au_model`) on RAF-CE: train split to fit, valid to
choose each AU's threshold. Writes the weights the package ships and registers their SHA-256.

    python -m mien.train.aus --data ../shared/datasets/rafce

Needs the train extra (torch). The faces are measured once per expression model and cached
(`--cache`); a refit after the expression model changes measures them again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from mien.expression.au_eval import au_report, best_threshold, measure_faces, read_coded
from mien.expression.au_model import (N_EXPRESSION, N_GEOMETRY, N_HOG, geometry_features, hog_features,
                                      log_probabilities, network)
from mien.expression.aus import AU_NAMES

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights" / "au_occurrence.npz"
SOURCES = Path(__file__).resolve().parents[1] / "models" / "sources.py"

# Chosen on RAF-CE valid among 64/128/256 hidden units, 30/60 epochs, dropout 0.3/0.5, 64/128/256 HOG
# components (mean AUROC within 0.002 of each other except 256 components, 0.01 lower).
HOG_COMPONENTS = N_HOG
# The expression network's regional features: 96 components, chosen by five-fold cross-validation on RAF-CE train
# among the pooled 256-D output (64 components), the fourth stage's 3 x 3 map (64, 128), the third stage's
# regions (64, 96, 128) and all of its 7 x 7 map (128): mean AUROC 0.874, 0.884, 0.887-0.889, 0.888.
FEATURE_COMPONENTS = 96
HIDDEN, DROPOUT, INPUT_DROPOUT, WEIGHT_DECAY, EPOCHS, MEMBERS = 128, 0.5, 0.1, 0.05, 30, 3


def measured(folder: Path, cache: Path) -> dict[str, np.ndarray]:
    """`geometry` (n, 228), `expression` log-probabilities (n, 8), `hog` (n, 6084), the expression network's
    regional `features` (n, D; (n, 0) for a model without them) and the coded AUs `truth` (n, 20) of the coded faces of a
    RAF-CE folder, cached per expression model."""
    from mien.models import resolve

    key = hashlib.sha256(resolve("expression").read_bytes()).hexdigest()[:12]
    path = cache / f"{folder.name}-{key}.npz"
    coded = read_coded(folder)
    truth = np.stack([coded.present(au) for au in AU_NAMES], 1)
    if path.exists():
        with np.load(path) as data:
            return {**{k: data[k] for k in data.files}, "truth": truth}
    faces = measure_faces(coded.paths)
    expression = np.full((len(truth), N_EXPRESSION), np.nan, np.float32)
    expression[faces.found] = log_probabilities(faces.logits[faces.found])
    out = {"geometry": geometry_features(faces.blendshapes, faces.landmarks), "expression": expression,
           "hog": hog_features(faces.aligned),
           "features": np.zeros((len(truth), 0), np.float32) if faces.features is None else faces.features}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return {**out, "truth": truth}


def principal_basis(rows: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, basis (D, components)) projecting rows onto their first principal components, whitened."""
    mean = rows.mean(0)
    _, singular, basis = np.linalg.svd(rows - mean, full_matrices=False)
    scale = singular[:components] / np.sqrt(len(rows))
    return mean.astype(np.float32), (basis[:components].T / scale).astype(np.float32)


def fit_members(z: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """An ensemble of `MEMBERS` one-hidden-layer ReLU networks, multi-label BCE, AdamW."""
    import torch

    torch.set_num_threads(2)
    x, t = torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    weights: dict[str, list[np.ndarray]] = {"w1": [], "b1": [], "w2": [], "b2": []}
    for member in range(MEMBERS):
        torch.manual_seed(seed + member)
        first, second = torch.nn.Linear(z.shape[1], HIDDEN), torch.nn.Linear(HIDDEN, y.shape[1])
        net = torch.nn.Sequential(torch.nn.Dropout(INPUT_DROPOUT), first, torch.nn.ReLU(), torch.nn.Dropout(DROPOUT),
                                  second)
        optimiser = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=WEIGHT_DECAY)
        for _ in range(EPOCHS):
            order = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                batch = order[i:i + 64]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[batch]), t[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        weights["w1"].append(first.weight.detach().numpy().T)
        weights["b1"].append(first.bias.detach().numpy())
        weights["w2"].append(second.weight.detach().numpy().T)
        weights["b2"].append(second.bias.detach().numpy())
    return {k: np.stack(v).astype(np.float32) for k, v in weights.items()}


def register(path: Path, name: str = "au_occurrence") -> str:
    """Write the weight file's SHA-256 into models/sources.py as registry entry `name`'s; returns it."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    text = SOURCES.read_text()
    text = re.sub(rf'("name": "{name}",\n    "file": "{re.escape(path.name)}",\n    "sha256": ")[0-9a-f]+(")',
                  rf"\g<1>{digest}\g<2>", text)
    SOURCES.write_text(text)
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/rafce"))
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--cache", type=Path, default=Path(".cache/aus"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.time()
    train, valid = measured(args.data / "train", args.cache), measured(args.data / "valid", args.cache)
    ok_t = ~(np.isnan(train["geometry"]).any(1) | np.isnan(train["expression"]).any(1))
    ok_v = ~(np.isnan(valid["geometry"]).any(1) | np.isnan(valid["expression"]).any(1))
    hog_mean, hog_basis = principal_basis(train["hog"][ok_t], HOG_COMPONENTS)
    blocks = {"hog": (hog_mean, hog_basis)}
    if train["features"].shape[1]:
        blocks["features"] = principal_basis(train["features"][ok_t], FEATURE_COMPONENTS)

    def inputs(faces: dict[str, np.ndarray]) -> np.ndarray:  # the model's inputs before standardising
        return np.concatenate([faces["geometry"], faces["expression"]]
                              + [(faces[k] - m) @ b for k, (m, b) in blocks.items()], 1)

    xt, xv = inputs(train), inputs(valid)
    yt, yv = train["truth"], valid["truth"]
    mean, scale = xt[ok_t].mean(0), xt[ok_t].std(0) + 1e-6
    model = fit_members((xt[ok_t] - mean) / scale, yt[ok_t], args.seed)
    model.update(mean=mean.astype(np.float32), scale=scale.astype(np.float32), hog_mean=hog_mean, hog_basis=hog_basis)
    if "features" in blocks:
        model.update(feature_mean=blocks["features"][0], feature_basis=blocks["features"][1])
    probs = np.full((len(xv), len(AU_NAMES)), np.nan, np.float32)
    probs[ok_v] = network(model, ((xv[ok_v] - mean) / scale).astype(np.float32))
    threshold = {}
    for k, au in enumerate(AU_NAMES):
        truth = yv[ok_v, k]
        threshold[au] = round(best_threshold(probs[ok_v, k], truth)[0], 3) if 0 < truth.sum() < len(truth) else 0.5
    coded = read_coded(args.data / "valid")
    report = au_report(probs, coded, thresholds=threshold)
    record = {"made_by": "python -m mien.train.aus --data ../shared/datasets/rafce", "trained_on": "RAF-CE train",
              "thresholds_from": "RAF-CE valid (F1-optimal per AU)", "seed": args.seed,
              "network": f"{MEMBERS} x MLP {xt.shape[1]}-{HIDDEN}-{len(AU_NAMES)} (ReLU, dropout {DROPOUT}, "
                         f"input dropout {INPUT_DROPOUT}, AdamW wd {WEIGHT_DECAY}, {EPOCHS} epochs)",
              "features": f"{N_GEOMETRY} geometry (52 blendshapes, 78 aligned mesh points, 20 rule estimates), "
                          f"{N_EXPRESSION} expression log-probabilities, {HOG_COMPONENTS} HOG components"
                          + (f", {FEATURE_COMPONENTS} components of the expression network's regional features"
                             if "features" in blocks else ""),
              "train_faces": int(ok_t.sum()), "valid_faces": int(ok_v.sum()), "seconds": round(time.time() - started),
              "valid": {k: report[k] for k in ("mean_auroc", "mean_f1", "aus_counted")}}
    model.update(thresholds=np.array([threshold[au] for au in AU_NAMES], np.float32),
                 record=np.array(json.dumps(record)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **model)
    digest = register(args.out) if args.out.resolve() == WEIGHTS else hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(json.dumps({**record, "sha256": digest, "bytes": args.out.stat().st_size,
                      "per_au": {au: e for au, e in report["per_au"].items() if "auroc" in e}}, indent=1))


if __name__ == "__main__":
    main()
