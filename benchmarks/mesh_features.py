"""Probe (issue #19): do the face mesh network's own features add to the expression classifier?

The mesh network in `face_landmarker.task` already runs on every face at 256x256. Its last two feature maps
(2x2x128 and 4x4x128, tensors 470 and 439 of the graph) can be read as extra outputs at no cost (the graph is
rewritten with them listed as outputs; the landmarks are unchanged). This script

1. runs the mesh on each face of the training and valid sets as `mien train` does (the dataset crop as the
   face's box) and keeps those 2,560 features next to the shipped classifier's crop and blendshapes
   (`--cache`, one .npz per set; ~7 min on the 2-core CPU for all six sets);
2. trains a small MLP on the features of FER+ + AffectNet-8 + RAF-DB train (soft targets, one learned bias
   per set, RAF-DB's contempt logit masked), and
3. adds `w` x its log-probabilities to the shipped classifier's on each valid set, for several `w`.

Valid data only; nothing here is shipped.

    python benchmarks/mesh_features.py --cache .cache/mesh_features
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import zipfile
from pathlib import Path

import numpy as np
from scipy.special import log_softmax

FEATURE_TENSORS = (470, 439)  # 2x2x128 and 4x4x128 maps before the landmark head
FEATURE_SIZE = 2 * 2 * 128 + 4 * 4 * 128
SETS = ("ferplus", "affectnet8", "rafdb")
SIZE = 64  # the shipped classifier's input

_mesh = None


def with_outputs(model: bytes, tensors: tuple[int, ...]) -> bytes:
    """The TFLite flatbuffer `model` with `tensors` added to its outputs."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    tree.subgraphs[0].outputs = list(tree.subgraphs[0].outputs) + list(tensors)
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _init_worker() -> None:
    """A MeshEstimator whose networks keep the features of the mesh call each face's points came from."""
    global _mesh
    from ai_edge_litert.interpreter import Interpreter

    import mien.face.mesh as mesh_module
    from mien.face import mesh_net
    from mien.face.mesh import MeshEstimator
    from mien.models import resolve

    class FeatureNetworks(mesh_net.MeshNetworks):
        def __init__(self) -> None:
            super().__init__()
            with zipfile.ZipFile(resolve("face_landmarker")) as bundle:
                raw = bundle.read("face_landmarks_detector.tflite")
            self._mesh = Interpreter(model_content=with_outputs(raw, FEATURE_TENSORS), num_threads=1)
            self._mesh.allocate_tensors()
            self._mesh_in = self._mesh.get_input_details()[0]["index"]
            self.by_points: dict[int, np.ndarray] = {}
            self.kept = None

        def mesh(self, rgb, region):
            points, presence = super().mesh(rgb, region)
            if hasattr(self, "by_points"):  # not during the base class's warm-up call
                self.by_points[id(points)] = np.concatenate([self._mesh.get_tensor(t).ravel() for t in FEATURE_TENSORS])
            return points, presence

        def blendshapes(self, points):  # called once per face, with the points that were kept
            self.kept = self.by_points.get(id(points))
            self.by_points = {}
            return super().blendshapes(points)

    mesh_module.MeshNetworks = FeatureNetworks  # the name MeshEstimator builds its networks from
    _mesh = MeshEstimator(workers=1)


def _process(path: str):
    from mien.expression.crop import expression_crop, fallback_crop, mesh_face_image
    from mien.io.images import load_image

    rgb = load_image(path).rgb
    big, result = mesh_face_image(_mesh, rgb)
    if not result.found[0]:
        return fallback_crop(rgb, SIZE, True), result.blendshapes[0], np.full(FEATURE_SIZE, np.nan, np.float32)
    kept = _mesh._workers[0][0].kept  # the features of the mesh call the face's points came from
    return expression_crop(big, result.landmarks[0], SIZE, True), result.blendshapes[0], kept


def extract(name: str, datasets: Path, cache: Path) -> dict[str, np.ndarray]:
    from rich.progress import track

    from mien.datasets.expressions import read_builtin

    out = cache / f"{name}.npz"
    if not out.exists():
        labelled = read_builtin(name, datasets)
        with mp.get_context("spawn").Pool(2, initializer=_init_worker) as pool:
            rows = list(track(pool.imap(_process, [str(p) for p in labelled.paths], chunksize=32),
                              total=len(labelled), description=name))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(out, crops=np.stack([r[0] for r in rows]), blend=np.stack([r[1] for r in rows]).astype(np.float32),
                 features=np.stack([r[2] for r in rows]).astype(np.float16), targets=labelled.targets)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def train_head(train: list[dict], hidden: int, epochs: int, seed: int = 0):
    """MLP on standardized features; returns a function features -> (n, 8) logits without any set's bias."""
    import torch

    torch.manual_seed(seed)
    x = np.vstack([np.nan_to_num(d["features"].astype(np.float32)) for d in train])
    mean, std = x.mean(0), x.std(0) + 1e-6
    targets = np.vstack([d["targets"] for d in train]).astype(np.float32)
    xs = torch.tensor((x - mean) / std)
    t = torch.tensor(targets / targets.sum(1, keepdims=True))
    sets = torch.tensor(np.concatenate([np.full(len(d["targets"]), i) for i, d in enumerate(train)]))
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                              torch.nn.Dropout(0.3), torch.nn.Linear(hidden, 8))
    bias = torch.nn.Parameter(torch.zeros(len(train), 8))
    mask = torch.zeros(len(train), 8)
    mask[SETS.index("rafdb"), 7] = -1e4  # RAF-DB has no contempt
    optimizer = torch.optim.AdamW(list(net.parameters()) + [bias], 1e-3, weight_decay=1e-3)
    steps = epochs * ((len(t) + 255) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(t))
        for i in range(0, len(t), 256):
            b = order[i:i + 256]
            logits = net(xs[b]) + bias[sets[b]] + mask[sets[b]]
            loss = -(t[b] * torch.log_softmax(logits, 1)).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()

    def head(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = torch.tensor((np.nan_to_num(features.astype(np.float32)) - mean) / std)
            return net(z).numpy()
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/mesh_features"))
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    from mien.expression.classifier import ExpressionClassifier

    train = [extract(f"{s}-train", args.data, args.cache) for s in SETS]
    valid = {s: extract(f"{s}-valid", args.data, args.cache) for s in SETS}
    head = train_head(train, args.hidden, args.epochs)
    weights = (0.0, 0.2, 0.3, 0.4, 0.5, 0.7)
    print(f"valid accuracy (%), shipped classifier + w x mesh-feature head (hidden {args.hidden})")
    print("set (prior)        head  " + "  ".join(f"w={w:<4}" for w in weights))
    for s, prior in (("ferplus", "natural"), ("ferplus", "ferplus"), ("affectnet8", "balanced"),
                     ("affectnet8", "natural"), ("rafdb", "natural")):
        data = valid[s]
        labels = data["targets"].argmax(1)
        base = ExpressionClassifier(prior=prior).logits(data["crops"], data["blend"])
        extra = head(data["features"])
        found = np.isfinite(data["features"].astype(np.float32)).all(1)
        if s == "rafdb":
            base[:, 7] = extra[:, 7] = -1e4
        alone = (extra.argmax(1) == labels).mean()  # the head alone, without any set's bias
        row = []
        for w in weights:
            fused = log_softmax(base, axis=1) + w * np.where(found[:, None], log_softmax(extra, axis=1), 0.0)
            row.append(100 * (fused.argmax(1) == labels).mean())
        print(f"{s + ' (' + prior + ')':<18} {100 * alone:5.1f}  " + "  ".join(f"{v:6.1f}" for v in row))


if __name__ == "__main__":
    main()
