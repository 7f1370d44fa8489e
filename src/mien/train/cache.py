"""Compute once, train many times: aligned expression crops and blendshapes for a labelled set.

Running the mesh on ~50k training faces takes minutes, so the results go into one `.npz` per
split (crops uint8 (n, 48, 48), blendshapes (n, 52), mesh_found (n,), targets (n, 8)).
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
from rich.progress import track

from mien.expression.crop import CROP_FRAMING, crop_from_face_image
from mien.io.images import load_image
from mien.train.datasets import LabelledSet

_worker_mesh = None


def crop_settings() -> np.ndarray:
    """How crops are framed; a cache made with other settings is rebuilt."""
    return np.array(list(CROP_FRAMING.values()), np.float64)


def _init_worker() -> None:
    global _worker_mesh
    from mien.face.mesh import MeshEstimator

    _worker_mesh = MeshEstimator(workers=1, min_presence=0.3)  # one process per core already; crops hold faces


def _process(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    rgb = load_image(path).rgb
    return crop_from_face_image(_worker_mesh, rgb)


def build_cache(labelled: LabelledSet, out: Path, workers: int = 2) -> Path:
    """Write `out` (.npz) for `labelled` unless it already exists with the same file list and crop framing."""
    out = Path(out)
    # Keyed by split-or-class folder and file name, so the datasets folder may move.
    names = np.array(["/".join(Path(p).parts[-2:]) for p in labelled.paths])
    if out.exists():
        with np.load(out) as old:
            same_framing = "crop_settings" in old.files and np.allclose(old["crop_settings"], crop_settings())
            if same_framing and np.array_equal(old["paths"], names):
                return out
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        results = list(track(pool.imap(_process, labelled.paths, chunksize=64), total=len(labelled),
                             description=f"caching {labelled.name}"))
    crops = np.stack([r[0] for r in results])
    blend = np.stack([r[1] for r in results]).astype(np.float32)
    found = np.array([r[2] for r in results])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=crops, blendshapes=blend, mesh_found=found,
                        targets=labelled.targets, paths=names, crop_settings=crop_settings())
    tmp.replace(out)
    return out


def load_cache(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a cache file written by `build_cache`."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
