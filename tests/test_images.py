"""Every kind of awkward input: decoded right, or refused with a clear one-line reason."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mien.io.images import MAX_SIDE, ImageError, expand_inputs, load_image


@pytest.fixture()
def astro_file(tmp_path, astronaut):
    path = tmp_path / "astro.jpg"
    Image.fromarray(astronaut).save(path, quality=95)
    return path


@pytest.mark.parametrize("make, reason", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, not an image"), "not a recognised image"),
])
def test_unreadable_files_get_a_reason(tmp_path, make, reason):
    path = tmp_path / "input.jpg"
    make(path)
    with pytest.raises(ImageError, match=reason):
        load_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images(tmp_path, astronaut, fmt):
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(path)


def test_one_pixel_image_is_refused(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(path)
    with pytest.raises(ImageError, match="too small"):
        load_image(path)


def test_thin_image_is_refused_not_crashed(tmp_path):
    """A 20 x 20,000 px strip fits the pixel budget but, shrunk to the largest side mien analyses, would be
    2 px tall (it used to reach OpenCV as a 0-px image and fail with OpenCV's own message)."""
    path = tmp_path / "strip.png"
    Image.new("RGB", (20_000, 20), (120, 90, 60)).save(path)
    with pytest.raises(ImageError, match="too thin to hold a face"):
        load_image(path)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_image_modes_become_rgb_and_keep_the_face(tmp_path, astronaut, analyzer, mode):
    img = Image.fromarray(astronaut)
    if mode == "I;16":
        grey = np.asarray(img.convert("L"), np.uint16) * 257
        img = Image.fromarray(grey)
        assert img.mode.startswith("I;16")
    else:
        img = img.convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    loaded = load_image(path)
    assert loaded.rgb.shape == (512, 512, 3) and loaded.rgb.dtype == np.uint8
    assert len(analyzer.analyze(path)) == 1


def test_exif_orientation_is_honoured(tmp_path, astronaut, analyzer):
    # Store the photo rotated on its side with EXIF orientation 6 ("rotate 90 CW to view").
    stored = Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert np.abs(loaded.rgb.astype(int) - astronaut.astype(int)).mean() < 6
    upright = analyzer.analyze(astronaut).boxes[0]
    np.testing.assert_allclose(analyzer.analyze(path).boxes[0], upright, atol=4)


def test_huge_jpeg_is_shrunk_while_decoding(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("L", (20000, 20000), 128).save(path, quality=50)
    loaded = load_image(path)
    assert max(loaded.rgb.shape[:2]) <= MAX_SIDE
    assert loaded.original_size == (20000, 20000)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_png_claiming_huge_size_is_refused_without_decoding(tmp_path):
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 1000)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_no_face_image_is_a_row_not_an_error(analyzer):
    faces = analyzer.analyze(np.full((300, 400, 3), 200, np.uint8))
    table = faces.to_pandas()
    assert len(faces) == 0 and len(table) == 1 and not table["face_found"][0]


def test_arrays_of_any_depth_and_layout(analyzer, astronaut):
    as_float = astronaut.astype(np.float32) / 255.0
    as_rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    for arr in (as_float, as_rgba, astronaut[:, :, 0]):
        assert load_image(arr).rgb.shape == (512, 512, 3)
    with pytest.raises(ImageError):
        load_image(np.zeros((10, 10, 7), np.uint8))


def test_expand_inputs_folders_globs_and_missing(tmp_path, astro_file):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("skip me")
    found = list(expand_inputs([str(tmp_path)]))
    assert [p.name for p in found] == ["astro.jpg", "b.png"]
    assert [p.name for p in expand_inputs([str(tmp_path / "*.jpg")])] == ["astro.jpg"]
    assert [p.name for p in expand_inputs([str(tmp_path / "nope.jpg")])] == ["nope.jpg"]
