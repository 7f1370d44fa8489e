"""Draw results on images: boxes, the mesh, head-pose axes and a short label per face."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.faces import QUALITY_FLAGS, Faces

_BOX = (40, 200, 80)
_FLAGGED = (240, 160, 30)
_MESH = (230, 230, 230)
_IRIS = (60, 160, 255)


def annotate(rgb: np.ndarray, faces: Faces, top_aus: int = 3, mesh: bool = True) -> np.ndarray:
    """Copy of an RGB image with each face's box, mesh, pose axes and label drawn on it.

    `rgb` is the faces' image at any size (the upright original or a shrunk copy: coordinates
    follow through `Faces.scaled_to`). `mesh=False` leaves the mesh points out (for anonymised
    images, where the mesh would redraw the face's shape).
    """
    out, scale, thick = _canvas(rgb)
    faces = faces.scaled_to(rgb.shape[:2])
    boxes, landmarks = faces.boxes, faces.landmarks
    colours = []
    for i in range(len(faces)):
        x1, y1, x2, y2, colour = _draw_box(out, boxes[i], faces.flags[i], thick)
        colours.append(colour)
        if faces.has_mesh[i] and mesh:
            pts = landmarks[i, :, :2]
            for x, y in pts[:468]:
                cv2.circle(out, (int(x), int(y)), max(1, thick // 2), _MESH, -1)
            for x, y in pts[468:]:
                cv2.circle(out, (int(x), int(y)), max(1, thick // 2), _IRIS, -1)
            _pose_axes(out, pts[1], faces.pose[i], (x2 - x1) * 0.5, thick)
    labels = [_label(faces, i, top_aus) for i in range(len(faces))]
    return place_labels(out, boxes, labels, colours, 0.45 * scale)


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LABEL_BG = (20, 20, 20)


def _text_size(lines: list[str], font_scale: float) -> tuple[int, int, int]:
    """(width, height, line height) in pixels of a block of text lines."""
    line_h = cv2.getTextSize("Ag", _FONT, font_scale, 1)[0][1] + max(3, int(7 * font_scale))
    width = max(cv2.getTextSize(t, _FONT, font_scale, 1)[0][0] for t in lines) + 6
    return width, line_h * len(lines) + 4, line_h


def _overlaps(rect, rects) -> bool:
    x1, y1, x2, y2 = rect
    return any(x1 < b[2] and b[0] < x2 and y1 < b[3] and b[1] < y2 for b in rects)


def _candidates(box, width: int, height: int) -> list[tuple[int, int]]:
    """Top-left corners to try for a label of `width` x `height` next to `box`: above, below, right, left, inside."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return [(x1, y1 - height - 2), (x1, y2 + 2), (x2 + 3, y1), (x1 - width - 3, y1), (x1 + 2, y1 + 2)]


def layout_labels(boxes: np.ndarray, labels: list[list[str]], font_scale: float, width: int, height: int,
                  min_scale: float = 0.3) -> tuple[list[tuple], list[int]]:
    """Where each face's label block goes: ([(rect, font scale, line height, lines)], faces sent to the legend).

    Tries beside the box (above, below, right, left, inside) without covering other faces, then
    covering them, then at smaller text sizes; a face whose label still fits nowhere gets only its
    number (`#i`, the table's `face_id`) on the image and its full label in the legend. No two
    blocks overlap and every block lies on the image.
    """
    placed: list[tuple[int, int, int, int]] = []
    spots, legend = [], []
    for i, lines in enumerate(labels):
        others = [tuple(b) for k, b in enumerate(boxes) if k != i]
        spot = _find_spot(boxes[i], lines, font_scale, min_scale, placed + others, width, height) or \
            _find_spot(boxes[i], lines, font_scale, min_scale, placed, width, height)
        if spot is None:  # only the number on the image, the whole label in the legend
            legend.append(i)
            lines = [lines[-1].split(" ")[0]]
            spot = _find_spot(boxes[i], lines, min_scale, min_scale, placed, width, height, inside_first=True)
            if spot is None:
                w, h, line_h = _text_size(lines, min_scale)
                x, y = int(np.clip(boxes[i][0], 0, max(width - w, 0))), int(np.clip(boxes[i][1], 0, max(height - h, 0)))
                spot = ((x, y, x + w, y + h), min_scale, line_h)
        placed.append(spot[0])
        spots.append((*spot, lines))
    return spots, legend


def place_labels(out: np.ndarray, boxes: np.ndarray, labels: list[list[str]], colours: list, font_scale: float,
                 min_scale: float = 0.3) -> np.ndarray:
    """Draw the label blocks laid out by `layout_labels`; returns the image (taller with a legend)."""
    height, width = out.shape[:2]
    spots, legend = layout_labels(boxes, labels, font_scale, width, height, min_scale)
    for (rect, size, line_h, lines), colour in zip(spots, colours):
        _text_block(out, rect, lines, size, line_h, colour)
    if legend:
        out = _with_legend(out, [(labels[i], colours[i]) for i in legend], font_scale)
    return out


def _find_spot(box, lines: list[str], font_scale: float, min_scale: float, obstacles, width: int, height: int,
               inside_first: bool = False):
    """(rect, font scale, line height) of the first free place for a label block, or None."""
    size = font_scale
    while size >= min_scale * 0.999:
        w, h, line_h = _text_size(lines, size)
        spots = _candidates(box, w, h)
        for x, y in (spots[-1:] + spots[:-1]) if inside_first else spots:
            rect = (x, y, x + w, y + h)
            if x >= 0 and y >= 0 and x + w <= width and y + h <= height and not _overlaps(rect, obstacles):
                return rect, size, line_h
        size *= 0.8
    return None


def _text_block(out: np.ndarray, rect, lines: list[str], size: float, line_h: int, colour) -> None:
    x1, y1, x2, y2 = rect
    region = out[y1:y2, x1:x2]
    region[:] = (region * 0.35 + np.array(_LABEL_BG) * 0.65).astype(np.uint8)  # shaded, still see-through
    for k, text in enumerate(lines):
        cv2.putText(out, text, (x1 + 3, y1 + 2 + line_h * (k + 1) - 4), _FONT, size, colour, 1, cv2.LINE_AA)


def _with_legend(out: np.ndarray, legend: list[tuple[list[str], tuple]], font_scale: float) -> np.ndarray:
    """The image with a strip below listing labels that did not fit beside their faces."""
    width = out.shape[1]
    entries = [(" | ".join(lines[::-1]), colour) for lines, colour in legend]
    size = font_scale
    while size > 0.3 and max(cv2.getTextSize(t, _FONT, size, 1)[0][0] for t, _ in entries) > width - 8:
        size *= 0.9
    line_h = cv2.getTextSize("Ag", _FONT, size, 1)[0][1] + max(4, int(8 * size))
    strip = np.full((line_h * len(entries) + 8, width, 3), 245, np.uint8)
    for k, (text, colour) in enumerate(entries):
        cv2.putText(strip, text, (4, 4 + line_h * (k + 1) - 4), _FONT, size, tuple(int(c * 0.7) for c in colour), 1,
                    cv2.LINE_AA)
    return np.concatenate([out, strip], 0)


def _canvas(rgb: np.ndarray) -> tuple[np.ndarray, float, int]:
    """A writable copy of the image, with a drawing scale and line thickness suited to its size."""
    out = np.ascontiguousarray(rgb.copy())
    scale = max(1.0, max(out.shape[:2]) / 700.0)
    return out, scale, max(1, round(2 * scale))


def _draw_box(out: np.ndarray, box: np.ndarray, flags: np.ndarray, thick: int):
    """Draw a face box (orange when a quality flag other than no_mesh is set); returns x1, y1, x2, y2, colour."""
    x1, y1, x2, y2 = box.astype(int)
    colour = _FLAGGED if flags[[i for i, name in enumerate(QUALITY_FLAGS) if name != "no_mesh"]].any() else _BOX
    cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
    return x1, y1, x2, y2, colour


def _label(faces: Faces, i: int, top_aus: int) -> list[str]:
    lines = [f"#{i} {faces.scores[i]:.2f}"]
    if faces.has_mesh[i]:
        yaw, pitch, roll = faces.pose[i]
        lines[0] += f" yaw {yaw:+.0f} pitch {pitch:+.0f} roll {roll:+.0f}"
        order = np.argsort(-faces.aus[i])[:top_aus]
        lines.insert(0, " ".join(f"{AU_NAMES[k]} {faces.aus[i, k]:.2f}" for k in order))
    top = faces.top_expression[i]
    if top is not None:
        v, a = faces.affect[i]
        lines.insert(0, f"{top} {np.nanmax(faces.expression[i]):.2f}  V {v:+.2f} A {a:+.2f}")
    flags = [name for name, on in zip(QUALITY_FLAGS, faces.flags[i]) if on]
    if flags:
        lines.insert(0, "! " + ", ".join(flags))
    return lines


def _pose_axes(img: np.ndarray, origin: np.ndarray, pose: np.ndarray, length: float, thick: int) -> None:
    """Draw the head's forward direction from the nose tip."""
    yaw, pitch = np.radians(pose[0]), np.radians(pose[1])
    dx = np.sin(yaw) * length
    dy = -np.sin(pitch) * length
    start = (int(origin[0]), int(origin[1]))
    cv2.arrowedLine(img, start, (int(origin[0] + dx), int(origin[1] + dy)), (255, 60, 60), thick, tipLength=0.2)


def blur_faces(rgb: np.ndarray, faces: Faces, blocks: int = 8) -> np.ndarray:
    """Copy of an RGB image (the faces' image at any size) with every face box (plus a 15% margin)
    pixelated to `blocks` x `blocks` cells and then blurred, so that faces cannot be recognised."""
    out = np.ascontiguousarray(rgb.copy())
    height, width = out.shape[:2]
    for box in faces.scaled_to((height, width)).boxes:
        x1, y1, x2, y2 = box
        mx, my = 0.15 * (x2 - x1), 0.15 * (y2 - y1)
        x1, y1 = int(max(x1 - mx, 0)), int(max(y1 - my, 0))
        x2, y2 = int(min(x2 + mx, width)), int(min(y2 + my, height))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        region = out[y1:y2, x1:x2]
        small = cv2.resize(region, (blocks, blocks), interpolation=cv2.INTER_AREA)
        mosaic = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(mosaic, (0, 0), max(x2 - x1, y2 - y1) / (2 * blocks))
    return out


def encode_image(rgb: np.ndarray, max_side: int | None = None, fmt: str = ".jpg", quality: int = 85) -> bytes:
    """An RGB image encoded as JPEG (or PNG with fmt=".png"), shrunk to `max_side` first if larger."""
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        scale = max_side / max(rgb.shape[:2])
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode the image as {fmt}")
    return data.tobytes()


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    """Encoded image bytes as a data: URI (for HTML and JSON that carry pictures inline)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def save_rgb(path, rgb: np.ndarray) -> None:
    """Write an RGB array to an image file (format from the suffix)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write image")


_AU_BARS = 5


def annotate_frame(rgb: np.ndarray, faces: Faces) -> np.ndarray:
    """Copy of a video frame with each face's box, track id, top expression and its strongest AUs as bars.

    Uses the smoothed boxes and values when `faces.smoothed` has them (steadier to watch).
    """
    out, scale, thick = _canvas(rgb)
    boxes = faces.smoothed.get("boxes", faces.boxes)
    expression = faces.smoothed.get("expression", faces.expression)
    aus = faces.smoothed.get("aus", faces.aus)
    for i in range(len(faces)):
        x1, y1, x2, y2, colour = _draw_box(out, boxes[i], faces.flags[i], thick)
        label = f"id {faces.track_ids[i]}" if faces.track_ids[i] >= 0 else f"#{i}"
        if not np.isnan(expression[i]).any():
            top = int(expression[i].argmax())
            label += f" {EXPRESSIONS[top]} {expression[i, top]:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour,
                    max(1, thick // 2), cv2.LINE_AA)
        if np.isnan(aus[i]).all():
            continue
        bar_h, bar_w = int(10 * scale), int(60 * scale)
        for row, k in enumerate(np.argsort(-np.nan_to_num(aus[i]))[:_AU_BARS]):
            y = y1 + row * (bar_h + 3)
            x = x2 + 4
            cv2.rectangle(out, (x, y), (x + bar_w, y + bar_h), (60, 60, 60), -1)
            cv2.rectangle(out, (x, y), (x + int(bar_w * float(np.clip(aus[i, k], 0, 1))), y + bar_h), _IRIS, -1)
            cv2.putText(out, AU_NAMES[k], (x + bar_w + 3, y + bar_h), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return out
