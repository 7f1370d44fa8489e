"""Receive uploads safely: size limits while copying, type sniffing, decode checks, our own names."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mien.io.images import ImageError, load_image
from mien.server.sniff import sniff

_CHUNK = 1 << 20


@dataclass
class UploadError(Exception):
    """An upload refused with an HTTP status and a one-line reason."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def display_name(name: str | None, index: int) -> str:
    """The client's file name, for display only: no folders, no control characters, bounded length."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^\w .,()+-]", "_", base).strip(" .")[:120]
    return base or f"upload_{index}"


def receive(stream: BinaryIO, name: str, folder: Path, index: int, max_bytes: int,
            kinds: tuple[str, ...] = ("image", "video")) -> dict:
    """Copy one upload into `folder` under a name of our own; returns its description
    {name, stored, type, size}. Raises `UploadError` (and leaves no file) when it is refused."""
    head = stream.read(64)
    if not head:
        raise UploadError(400, f"{name}: empty file")
    found = sniff(head)
    if found is None or found[0] not in kinds:
        wanted = " or ".join(kinds)
        raise UploadError(415, f"{name}: not a supported {wanted} (JPEG, PNG, WebP, BMP, TIFF, GIF images; "
                               "MP4, MOV, AVI, MKV, WebM videos), judged by its content")
    kind, ext = found
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"input_{index:04d}{ext}"
    size = len(head)
    try:
        with open(target, "wb") as out:
            out.write(head)
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadError(413, f"{name}: larger than the {max_bytes / 2**20:.0f} MiB upload limit")
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return {"name": name, "stored": target.name, "type": kind, "size": size}


def header_pixels(source) -> int | None:
    """Pixel count an image file or bytes declares in its header (read without decoding), or None."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as img:
            return int(img.width) * int(img.height)
    except Exception:  # not an image PIL can read: the decoder will say why
        return None


# A progressive JPEG is decoded scan by scan; ordinary ones have at most about a dozen scans, while a few
# hundred KB can carry tens of thousands (each a full pass over the image's coefficients: minutes of CPU).
MAX_JPEG_SCANS = 64


def check_pixels(source, name: str, max_pixels: int) -> None:
    """Refuse an image before it is decoded when its header declares more than `max_pixels` (413: a small PNG
    can claim 20000x20000 px and cost gigabytes to decode), when its size cannot be read from its header at all
    (415: what cannot be measured is not decoded), or when it is a JPEG of more than `MAX_JPEG_SCANS` scans
    (422: a scan bomb)."""
    pixels = header_pixels(source)
    if pixels is None:
        raise UploadError(415, f"{name}: not an image whose size can be read before decoding "
                               "(send JPEG, PNG, WebP, TIFF, GIF or BMP)")
    if pixels > max_pixels:
        raise UploadError(413, f"{name}: {pixels / 1e6:.0f} MP; the limit is {max_pixels / 1e6:.0f} MP per image")
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    # In a JPEG's entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so every
    # FF DA pair is a start-of-scan marker.
    scans = data.count(b"\xff\xda") if data[:2] == b"\xff\xd8" else 0
    if scans > MAX_JPEG_SCANS:
        raise UploadError(422, f"{name}: a JPEG of {scans} scans; at most {MAX_JPEG_SCANS} are decoded")


# Uploads are decoded at most this many at a time (requests run on a large thread pool): a burst of
# big images then costs a bounded amount of memory, not one full decode per waiting request.
_DECODES = threading.BoundedSemaphore(2)


def check_image(path: Path, name: str, max_pixels: int | None = None):
    """Decode an uploaded image (`LoadedImage`), or raise UploadError 422 when it is corrupt (413 when its
    header declares more than `max_pixels`)."""
    if max_pixels is not None:
        check_pixels(path, name, max_pixels)
    with _DECODES:
        try:
            return load_image(path, source=name)
        except ImageError as exc:
            raise UploadError(422, f"{name}: {exc}") from None


def check_video(path: Path, name: str, max_seconds: float, max_pixels: int | None = None) -> dict:
    """Open an uploaded video and check its length (422) and frame size (413 beyond `max_pixels`, the images'
    budget: every frame is decoded at that size); returns its info."""
    from mien.video.reader import VideoError, open_video

    try:
        with open_video(path) as reader:
            info = reader.info
    except VideoError as exc:  # its message starts with the stored path: the client sees its own name only
        raise UploadError(422, f"{name}: {str(exc).removeprefix(f'{path}: ')}") from None
    duration = info.duration_s
    if duration is not None and duration > max_seconds:
        raise UploadError(422, f"{name}: {duration:.0f} s long; the limit is {max_seconds:.0f} s")
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise UploadError(413, f"{name}: frames of {info.width}x{info.height} px; the limit is "
                               f"{max_pixels / 1e6:.0f} MP per frame")
    return {"fps": info.fps, "frames": info.frame_count, "duration_s": duration,
            "width": info.width, "height": info.height}
