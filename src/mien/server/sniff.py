"""Recognise uploads by their first bytes, never by their file names."""

from __future__ import annotations

# (kind, extension) for each signature; kind is "image" or "video".
_SIGNATURES: list[tuple[int, bytes, str, str]] = [
    (0, b"\xff\xd8\xff", "image", ".jpg"),
    (0, b"\x89PNG\r\n\x1a\n", "image", ".png"),
    (0, b"GIF87a", "image", ".gif"),
    (0, b"GIF89a", "image", ".gif"),
    (0, b"BM", "image", ".bmp"),
    (0, b"II*\x00", "image", ".tif"),
    (0, b"MM\x00*", "image", ".tif"),
    (0, b"\x1a\x45\xdf\xa3", "video", ".mkv"),  # Matroska and WebM
]


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, extension) of a file from its first 64 bytes, or None when it is not a supported type."""
    if len(head) >= 12 and head[:4] == b"RIFF":
        if head[8:12] == b"WEBP":
            return "image", ".webp"
        if head[8:12] == b"AVI ":
            return "video", ".avi"
        return None
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
            return None  # still images in an ISO container: not decodable here
        return "video", ".mov" if brand == b"qt  " else ".mp4"
    for offset, magic, kind, ext in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return kind, ext
    return None
