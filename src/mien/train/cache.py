"""Compute once, train many times: aligned expression crops and blendshapes for a labelled set.

Running the mesh on ~50k training faces takes minutes, so the results go into one `.npz` per
split (crops uint8 (n, 48, 48) grey, or (n, S, S, 3) RGB for colour models; blendshapes (n, 52),
mesh_found (n,), targets (n, 8)), with the crop framing and the way the mesh was made: a cache made
otherwise is rebuilt.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
from rich.progress import track

from mien.expression.crop import CROP_FRAMING, crop_from_face_image, render_side, resize_crops
from mien.face.mesh import PIPELINE as MESH_PIPELINE
from mien.io.images import load_image
from mien.datasets.expressions import LabelledSet

_worker_mesh = None
_worker_crop: tuple[int, bool] = (CROP_FRAMING["input_size"], False)


def crop_settings(size: int | None = None, colour: bool = False) -> np.ndarray:
    """How crops are framed (and, for colour caches, their size); a cache made otherwise is rebuilt."""
    framing = dict(CROP_FRAMING)
    if size is not None:
        framing["input_size"] = size
    return np.array(list(framing.values()) + ([1.0] if colour else []), np.float64)


def _init_worker(size: int, colour: bool) -> None:
    global _worker_mesh, _worker_crop
    from mien.face.mesh import MeshEstimator

    _worker_mesh = MeshEstimator(workers=1)  # one process per core already
    _worker_crop = (size, colour)


def _process(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    rgb = load_image(path).rgb
    return crop_from_face_image(_worker_mesh, rgb, *_worker_crop)


def build_cache(labelled: LabelledSet, out: Path, workers: int = 2, size: int | None = None,
                colour: bool = False) -> Path:
    """Write `out` (.npz) for `labelled` unless it already exists with the same file list and crop framing
    (`size`/`colour`: RGB crops of that side instead of the grey 48 px ones)."""
    out = Path(out)
    # Keyed by split-or-class folder and file name, so the datasets folder may move.
    names = np.array(["/".join(Path(p).parts[-2:]) for p in labelled.paths])
    if out.exists():
        with np.load(out) as old:
            settings = crop_settings(size, colour)
            same_framing = ("crop_settings" in old.files and old["crop_settings"].shape == settings.shape
                            and np.allclose(old["crop_settings"], settings))
            # Crops and blendshapes from a mesh made another way differ a little: such a cache is stale too.
            same_mesh = "mesh_pipeline" in old.files and str(old["mesh_pipeline"]) == MESH_PIPELINE
            if same_framing and same_mesh and np.array_equal(old["paths"], names):
                return out
    crop_size = size or CROP_FRAMING["input_size"]
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(crop_size, colour)) as pool:
        results = list(track(pool.imap(_process, labelled.paths, chunksize=64), total=len(labelled),
                             description=f"caching {labelled.name}"))
    crops = np.stack([r[0] for r in results])
    blend = np.stack([r[1] for r in results]).astype(np.float32)
    found = np.array([r[2] for r in results])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, crops=crops, blendshapes=blend, mesh_found=found,
                        targets=labelled.targets, paths=names, crop_settings=crop_settings(size, colour),
                        mesh_pipeline=np.array(MESH_PIPELINE))
    tmp.replace(out)
    return out


def load_cache(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a cache file written by `build_cache` (or packed by `pack_cache`: its crops are decoded)."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    if "crops_jpeg" in arrays:
        arrays["crops"] = _decode_crops(arrays.pop("crops_jpeg"), arrays.pop("crops_jpeg_ends"),
                                        arrays.pop("crops_grey"), tuple(arrays.pop("crops_shape")))
    return arrays


def pack_cache(path: Path, out: Path, quality: int = 90, side: int | None = None) -> Path:
    """`path`'s cache with its crops as JPEG (grey ones, such as FER+'s, in one channel), shrunk to `side` px
    if given (FER+'s faces hold 48 px of detail): several times smaller, for carrying the training data to
    another machine (a lent GPU); `load_cache` reads it like the original (training resizes crops anyway)."""
    import cv2

    data = load_cache(path)
    crops = data.pop("crops")
    if side is not None:
        crops = resize_crops(crops, side)
    grey = np.array([c.ndim == 2 or (np.array_equal(c[..., 0], c[..., 1]) and np.array_equal(c[..., 1], c[..., 2]))
                     for c in crops])
    chunks = []
    for crop, is_grey in zip(crops, grey):
        image = crop if crop.ndim == 2 else (crop[..., 0] if is_grey else crop[..., ::-1])
        chunks.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])[1].tobytes())
    ends = np.cumsum([len(c) for c in chunks])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, crops_jpeg=np.frombuffer(b"".join(chunks), np.uint8), crops_jpeg_ends=ends, crops_grey=grey,
             crops_shape=np.array(crops.shape), **data)
    return out


def _decode_crops(blob: np.ndarray, ends: np.ndarray, grey: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    crops = np.empty(shape, np.uint8)
    starts = np.concatenate([[0], ends[:-1]])
    for i, (start, end) in enumerate(zip(starts, ends)):
        image = cv2.imdecode(blob[start:end], cv2.IMREAD_GRAYSCALE if grey[i] else cv2.IMREAD_COLOR)
        if len(shape) == 3:
            crops[i] = image
        else:
            crops[i] = image[..., None] if grey[i] else image[..., ::-1]
    return crops


COLOUR_CACHE_SIDE = 96  # colour crops are cached at this side and resized to the model's input


def cache_file(cache_dir: Path, name: str, colour: bool) -> Path:
    """Where a set's cached crops live: grey in `cache_dir`, colour (96 px) in `cache_dir/rgb96`."""
    return Path(cache_dir) / f"rgb{COLOUR_CACHE_SIDE}" / f"{name}.npz" if colour else Path(cache_dir) / f"{name}.npz"


def build_set_cache(labelled: LabelledSet, cache_dir: Path, colour: bool) -> Path:
    """`build_cache` of a set at its `cache_file` (colour crops at `COLOUR_CACHE_SIDE`); returns the path."""
    return build_cache(labelled, cache_file(cache_dir, labelled.name, colour),
                       size=COLOUR_CACHE_SIDE if colour else None, colour=colour)


def cache_for_classifier(labelled: LabelledSet, cache_dir: Path, input_size: int, colour: bool,
                         render_rule: dict | None = None) -> dict:
    """A set's cached crops as a classifier of `input_size` px (grey, or RGB when `colour`) reads them: grey
    caches in `cache_dir`, colour ones (96 px) in `cache_dir/rgb96`, resized on load (rendered at the
    resolution of the set's images first under the classifier's `render_rule`, as it crops them itself)."""
    data = dict(load_cache(build_set_cache(labelled, cache_dir, colour)))
    data["crops"] = resize_crops(data["crops"], input_size, set_render_side(labelled.name, render_rule))
    return data


def set_render_side(name: str, render_rule: dict | None) -> int | None:
    """The side a built-in set's faces are rendered at under `render_rule` (None without one)."""
    from mien.datasets.expressions import native_side

    return None if render_rule is None else render_side(native_side(name), render_rule)


if __name__ == "__main__":  # python -m mien.train.cache --pack OUT_DIR CACHE.npz... (JPEG packs for a lent GPU)
    import argparse

    parser = argparse.ArgumentParser(description="Pack training caches (crops as JPEG) to carry them elsewhere.")
    parser.add_argument("--pack", type=Path, required=True, help="output folder")
    parser.add_argument("caches", type=Path, nargs="+")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--side", type=int, default=None, help="shrink the crops to this side first")
    options = parser.parse_args()
    for cache in options.caches:
        packed = pack_cache(cache, options.pack / cache.name, options.quality, options.side)
        print(f"{packed}: {packed.stat().st_size / 1e6:.1f} MB")
