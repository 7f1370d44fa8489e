"""Shared fixtures: real models, the public-domain astronaut photo, generated test images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import os

# Ray started by the tests stays on loopback (single-machine mode), set before anything imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import mien  # noqa: E402

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB, public domain (scikit-image)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def analyzer():
    with mien.Analyzer(mode="auto") as a:
        yield a


@pytest.fixture(scope="session")
def face_crop(astronaut) -> np.ndarray:
    """The astronaut's head with some margin (RGB)."""
    return np.ascontiguousarray(astronaut[30:230, 120:330])


def collage(tile: np.ndarray, rows: int, cols: int, tile_px: int, gap: int = 20,
            background: int = 90) -> np.ndarray:
    """Grid of copies of `tile` resized to `tile_px`, on a grey canvas (RGB)."""
    small = cv2.resize(tile, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
    h = rows * (tile_px + gap) + gap
    w = cols * (tile_px + gap) + gap
    canvas = np.full((h, w, 3), background, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = gap + r * (tile_px + gap), gap + c * (tile_px + gap)
            canvas[y:y + tile_px, x:x + tile_px] = small
    return canvas


def needs_dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"dataset {name} not present at {path}")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mien serve` on a free localhost port for one test module: (base URL, data folder)."""
    from server_helpers import running_server

    data = tmp_path_factory.mktemp("serve") / "data"
    with running_server(data, "--max-upload-mb", "1", "--max-video-s", "20") as url:
        yield url, data


@pytest.fixture(scope="module")
def photo(astronaut) -> bytes:
    """The astronaut as JPEG bytes, to upload."""
    from server_helpers import jpeg_bytes

    return jpeg_bytes(astronaut)
