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


def annotate(rgb: np.ndarray, faces: Faces, top_aus: int = 3, scale_coords: float = 1.0,
             mesh: bool = True) -> np.ndarray:
    """Copy of an RGB image with each face's box, mesh, pose axes and label drawn on it.

    `scale_coords` maps `faces` coordinates to this image's pixels (the `LoadedImage.scale` of
    a shrunk image; 1.0 when they already match). `mesh=False` leaves the mesh points out (for
    anonymised images, where the mesh would redraw the face's shape).
    """
    out, scale, thick = _canvas(rgb)
    boxes, landmarks = faces.boxes * scale_coords, faces.landmarks * scale_coords
    for i in range(len(faces)):
        x1, y1, x2, y2, colour = _draw_box(out, boxes[i], faces.flags[i], thick)
        if faces.has_mesh[i] and mesh:
            pts = landmarks[i, :, :2]
            for x, y in pts[:468]:
                cv2.circle(out, (int(x), int(y)), max(1, thick // 2), _MESH, -1)
            for x, y in pts[468:]:
                cv2.circle(out, (int(x), int(y)), max(1, thick // 2), _IRIS, -1)
            _pose_axes(out, pts[1], faces.pose[i], (x2 - x1) * 0.5, thick)
        for line_no, text in enumerate(_label(faces, i, top_aus)):
            y = max(12, y1 - 6 - 16 * scale * line_no)
            cv2.putText(out, text, (x1, int(y)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale,
                        colour, max(1, thick // 2), cv2.LINE_AA)
    return out


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


def blur_faces(rgb: np.ndarray, faces: Faces, scale_coords: float = 1.0, blocks: int = 8) -> np.ndarray:
    """Copy of an RGB image with every face box (plus a 15% margin) pixelated to `blocks` x `blocks`
    cells and then blurred, so that faces cannot be recognised (anonymised outputs)."""
    out = np.ascontiguousarray(rgb.copy())
    height, width = out.shape[:2]
    for box in faces.boxes * scale_coords:
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
