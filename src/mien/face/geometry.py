"""The facial transformation matrix: MediaPipe's canonical face fitted to a mesh.

`face_landmarker.task` holds the canonical face (468 vertices, in cm) and the 33 weighted points
MediaPipe's geometry pipeline fits it by (`geometry_pipeline_metadata_landmarks.binarypb`). mien
fits the same points with a weighted similarity (Procrustes, orthographic: the face is small
against its distance), then places the face in metric camera space with a pinhole camera of 63
degrees vertical field of view (MediaPipe's default). Against the landmarker's own matrices on
UTKFace faces the Euler angles differ by 0.7 (yaw), 1.4 (pitch) and 0.1 (roll) degrees on average;
the landmarker assumes its input crop is the whole picture taken with a wide lens.
"""

from __future__ import annotations

import struct
import zipfile
from functools import lru_cache
from typing import Iterator

import numpy as np

from mien.models import resolve

VERTICAL_FOV_DEGREES = 63.0


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int | float | bytes]]:
    """(field number, value) of a protobuf message: ints, float32s, or bytes for nested/packed fields."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | float | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            value, at = data[at:at + length], at + length
        elif wire == 5:
            value, at = struct.unpack("<f", data[at:at + 4])[0], at + 4
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, value


@lru_cache(maxsize=1)
def canonical_face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(canonical vertices (468, 3) cm, y up and z towards the viewer; the fitted points' indices (33,);
    their weights (33,), summing to 1)."""
    with zipfile.ZipFile(resolve("face_landmarker")) as bundle:
        metadata = bundle.read("geometry_pipeline_metadata_landmarks.binarypb")
    vertices: list[float] = []
    indices, weights = [], []
    for number, value in _fields(metadata):
        if not isinstance(value, bytes):
            continue
        if number == 1:  # the canonical mesh: vertex buffer (x, y, z, u, v per vertex)
            for inner, item in _fields(value):
                if inner == 3:
                    vertices.extend(np.frombuffer(item, "<f4") if isinstance(item, bytes) else [float(item)])
        elif number == 2:  # one weighted landmark of the Procrustes basis
            entry = dict(_fields(value))
            indices.append(int(entry.get(1, 0)))
            weights.append(float(entry.get(2, 0.0)))
    mesh = np.asarray(vertices, np.float64).reshape(-1, 5)[:, :3]
    w = np.asarray(weights)
    return mesh, np.asarray(indices), w / w.sum()


def facial_transforms(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(n, 4, 4) float32 matrices taking the canonical face (cm) to camera space (x right, y up, the
    camera looking down -z), from (n, 478, 3) pixel meshes of an image (height, width); NaN rows stay NaN."""
    mesh, indices, w = canonical_face()
    height, width = image_size
    focal = (height / 2) / np.tan(np.radians(VERTICAL_FOV_DEGREES) / 2)
    model = mesh[indices]
    model_centre = w @ model
    model_spread = (w[:, None] * (model - model_centre) ** 2).sum()
    out = np.full((len(landmarks), 4, 4), np.nan, np.float32)
    for k, points in enumerate(np.asarray(landmarks, np.float64)):
        seen = points[indices] * [1, -1, -1]  # to y up, z towards the viewer, as the canonical face
        if not np.isfinite(seen).all():
            continue
        centre = w @ seen
        cross = ((model - model_centre) * w[:, None]).T @ (seen - centre)
        u, singular, vt = np.linalg.svd(cross)
        sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
        rotation = vt.T @ np.diag([1, 1, sign]) @ u.T
        scale = (singular * [1, 1, sign]).sum() / model_spread  # pixels per cm
        depth = focal / scale
        centre_cm = np.array([(centre[0] - width / 2) / scale, (centre[1] + height / 2) / scale, -depth])
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = centre_cm - rotation @ model_centre
        out[k] = matrix
    return out
