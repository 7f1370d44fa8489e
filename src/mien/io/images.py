"""Read images safely: any common format, honouring EXIF orientation, never exhausting memory.

Everything becomes an (H, W, 3) uint8 RGB array. Problems raise `ImageError` with a one-line
reason; callers print it with the input's name and go on.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Decoding more than this many pixels is refused (JPEGs are first shrunk while decoding).
MAX_PIXELS = 64_000_000
# Images are analysed with their longer side at most this long.
MAX_SIDE = 4096
# Images smaller than this on either side cannot show a usable face.
MIN_SIDE = 16
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

ImageFile.LOAD_TRUNCATED_IMAGES = False
# PIL's warnings about odd files (EXIF it cannot parse, pixel counts) would repeat per image; a bad image
# becomes one ImageError line instead. A filter, not warnings.catch_warnings: that swaps process-wide
# state and is not thread-safe (images are decoded on several threads).
warnings.filterwarnings("ignore", module=r"PIL\.")
# We enforce our own pixel limit below; PIL's bomb check would fire before we can shrink JPEGs.
Image.MAX_IMAGE_PIXELS = None

ImageLike = Union[str, os.PathLike, np.ndarray, Image.Image]


class ImageError(ValueError):
    """An input that cannot be analysed, with a one-line reason."""


@dataclass
class LoadedImage:
    """A decoded, upright RGB image and how its pixels relate to the original's.

    The coordinate frame of every mien output is the **upright original**: the image as a viewer
    shows it (EXIF orientation applied), at its full stored resolution; `original_size` is its
    (H, W). `rgb` (H', W', 3) uint8 is what is analysed: the same picture, shrunk by `scale`
    (< 1) when it was huge. `Analyzer` reports `Faces` in the upright original's pixels; to draw
    them on `rgb` (or any resized copy) use `Faces.scaled_to(rgb.shape[:2])`.
    """

    rgb: np.ndarray
    source: str
    original_size: tuple[int, int]
    scale: float = 1.0


def load_image(image: ImageLike, color: str = "rgb", source: str | None = None) -> LoadedImage:
    """Load a path, PIL image or numpy array as RGB uint8.

    Args:
        image: file path, PIL image, or array (H, W), (H, W, 3) or (H, W, 4).
        color: channel order of numpy input, "rgb" or "bgr" (OpenCV). Ignored for files/PIL.
        source: name used in messages and tables (defaults to the path or "<array>").
    """
    if isinstance(image, np.ndarray):
        return _limit_side(_array_to_rgb(image, color), source or "<array>", image.shape[:2])
    if isinstance(image, Image.Image):
        stored = (image.height, image.width)
        upright = ImageOps.exif_transpose(image)
        return _limit_side(_pil_to_rgb(upright), source or "<PIL image>", _upright_size(stored, image.size, upright.size))
    return _load_file(Path(image), source or str(image))


def _load_file(path: Path, source: str) -> LoadedImage:
    if not path.exists():
        raise ImageError("no such file")
    if path.is_dir():
        raise ImageError("is a directory")
    if path.stat().st_size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            stored = (img.height, img.width)  # before a JPEG draft shrinks it
            _check_size(img)
            decoded = img.size
            # In place: a big photo is held once by PIL and once as the array, not four times.
            ImageOps.exif_transpose(img, in_place=True)
            original = _upright_size(stored, decoded, img.size)
            rgb = _pil_to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image ({_short(exc)})") from None
    except MemoryError:
        raise ImageError("image too large to decode in memory") from None
    return _limit_side(rgb, source, original)


def _upright_size(stored: tuple[int, int], before: tuple[int, int], after: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the upright original: the stored (H, W), sides swapped when applying the EXIF
    orientation turned the decoded (W, H) `before` into `after` by 90 or 270 degrees."""
    turned = before != after
    return (stored[1], stored[0]) if turned else stored


def _check_size(img: Image.Image) -> None:
    """Refuse absurd sizes before decoding; let JPEG decode at a reduced scale instead."""
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"invalid size {width}x{height}")
    if width * height <= MAX_PIXELS:
        return
    if img.format == "JPEG":
        # The JPEG decoder can produce 1/2, 1/4 or 1/8 scale directly, cheaply.
        img.draft("RGB", (max(1, width // 8), max(1, height // 8)) if width * height > 16 * MAX_PIXELS
                  else (width // 4, height // 4))
        if img.size[0] * img.size[1] <= MAX_PIXELS:
            return
    raise ImageError(f"image too large ({width}x{height} px > {MAX_PIXELS // 1_000_000} MP limit)")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) if arr.size else 0.0
        arr = arr / (65535.0 if top > 255 else 255.0) * 255.0
        return _array_to_rgb(np.clip(arr, 0, 255).astype(np.uint8), "rgb")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)


def _array_to_rgb(arr: np.ndarray, color: str) -> np.ndarray:
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', not {color!r}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ImageError(f"array of shape {arr.shape} is not an image")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"array of shape {arr.shape} is empty")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        top = 65535.0 if arr.dtype == np.uint16 else (1.0 if np.issubdtype(arr.dtype, np.floating) else 255.0)
        arr = np.clip(arr.astype(np.float32) / top * 255.0, 0, 255).astype(np.uint8)
    if color == "bgr":
        arr = arr[:, :, ::-1]
    return np.ascontiguousarray(arr)


def _limit_side(rgb: np.ndarray, source: str, original: tuple[int, int]) -> LoadedImage:
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"image too small to hold a face ({width}x{height} px)")
    scale = min(1.0, MAX_SIDE / max(height, width))
    if scale < 1.0:
        import cv2

        size = (round(width * scale), round(height * scale))
        if min(size) < MIN_SIDE:  # a very thin image: shrunk to fit, its short side could hold no face
            raise ImageError(f"image too thin to hold a face ({width}x{height} px)")
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    # Report the scale against the stored size (JPEG draft may already have shrunk it).
    return LoadedImage(rgb, source, original, rgb.shape[1] / original[1])


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def expand_each(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """`expand_inputs` of `paths`, each searched once, and one line for each folder among them that holds no images
    (an input that failed)."""
    files: list[Path] = []
    empty: list[str] = []
    for raw in paths:
        found = list(expand_inputs([raw]))
        files += found
        if not found and Path(raw).is_dir():
            empty.append(f"{raw}: a folder without images (none ending in {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files, empty


def expand_inputs(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files from paths, folders (recursively, image suffixes only) and glob patterns, in order.

    Paths that do not exist are yielded as given, so the caller reports them as errors.
    """
    for raw in paths:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif not path.exists() and glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            yield from (Path(m) for m in matches if Path(m).is_file()) if matches else [path]
        else:
            yield path

