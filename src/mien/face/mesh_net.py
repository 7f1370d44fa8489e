"""MediaPipe's face mesh and blendshape networks, run directly with LiteRT (`ai-edge-litert`).

MediaPipe's FaceLandmarker runs, per face: a face detector on the image it is given, a square
region of interest around the detection (rotated so the eyes are level, 1.5x the face), the mesh
network on that region at 256x256, and the blendshape network on 146 of the mesh points. mien
already knows where each face is (its own detector, or the same face's mesh in the previous video
frame), so it builds the region itself and runs the two networks from the same
`face_landmarker.task` bundle: the same mesh (0.7% of the eye distance from the landmarker's on
UTKFace) at ~60% of the landmarker's time, and blendshapes identical to the landmarker's for the
same points.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import cv2
import numpy as np

from mien.models import resolve
from mien.models.quiet import native_stderr_silenced

N_LANDMARKS = 478  # points of MediaPipe's face mesh (468 face + 10 iris)
INPUT_SIDE = 256  # the mesh network's input (pixels)
ROI_SCALE = 1.5  # region side / face extent, as MediaPipe frames faces for this network
# The points the blendshape network reads (in this order), as MediaPipe's face blendshapes graph picks them
# (read from the index table in MediaPipe 1.2's libmediapipe.so; checked in tests against the landmarker).
BLENDSHAPE_POINTS = np.array([
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78,
    80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152,
    153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312,
    314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381,
    382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472,
    473, 474, 475, 476, 477])
_EYE_CORNERS = (33, 263)  # outer corners: subject's right eye, left eye


# Regions are snapped to a 1/32-pixel grid and their roll to 2^-12 radians: far below the mesh's own jitter, far
# above the last-bit differences between float runtimes and CPUs (1e-4 px), which a followed face would otherwise
# carry from frame to frame and grow to that jitter. Snapped, such a difference vanishes unless it straddles a step.
REGION_STEP_PX = 1 / 32
ANGLE_STEP = 2.0 ** -12


@dataclass(frozen=True)
class Region:
    """A square region of interest: centre (x, y) and side in image pixels, `angle` (radians) the
    face's roll, by which the region is turned so the face reaches the network upright. Snapped to
    `REGION_STEP_PX` and `ANGLE_STEP` when made."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        for name, step in (("cx", REGION_STEP_PX), ("cy", REGION_STEP_PX), ("side", REGION_STEP_PX),
                           ("angle", ANGLE_STEP)):
            object.__setattr__(self, name, float(np.rint(float(getattr(self, name)) / step) * step))  # NaN stays NaN

    def to_crop(self) -> np.ndarray:
        """2x3 affine from image pixels to the network's 256x256 input."""
        s = INPUT_SIDE / max(self.side, 1.0)
        c, si = np.cos(self.angle) * s, np.sin(self.angle) * s
        linear = np.array([[c, si], [-si, c]])
        shift = INPUT_SIDE / 2 - linear @ np.array([self.cx, self.cy])
        return np.hstack([linear, shift[:, None]])


def region_from_box(box: np.ndarray, angle: float = 0.0) -> Region:
    """Region around an xyxy face box (a detection or a mesh's extent)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return Region((x1 + x2) / 2, (y1 + y2) / 2, ROI_SCALE * max(x2 - x1, y2 - y1), angle)


def region_from_landmarks(points: np.ndarray) -> Region:
    """Region around a (478, 3) pixel mesh, turned by its roll (the line through the outer eye corners),
    as MediaPipe frames a face from its previous mesh."""
    right, left = points[_EYE_CORNERS[0], :2], points[_EYE_CORNERS[1], :2]
    angle = float(np.arctan2(left[1] - right[1], left[0] - right[0]))
    c, s = np.cos(angle), np.sin(angle)
    x, y = points[:, 0], points[:, 1]
    u, v = x * c + y * s, -x * s + y * c  # coordinates along and across the eye line
    mu, mv = (u.max() + u.min()) / 2, (v.max() + v.min()) / 2
    side = ROI_SCALE * max(u.max() - u.min(), v.max() - v.min())
    return Region(float(mu * c - mv * s), float(mu * s + mv * c), float(side), angle)


class MeshNetworks:
    """The mesh network (256x256 RGB -> 478 points + face presence) and the blendshape network
    (146 points -> 52 scores) of `face_landmarker.task`, on one CPU thread. Not thread-safe: use
    one instance per thread."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with zipfile.ZipFile(resolve("face_landmarker")) as bundle:
            mesh_model = bundle.read("face_landmarks_detector.tflite")
            shapes_model = bundle.read("face_blendshapes.tflite")
        with native_stderr_silenced():  # LiteRT announces its CPU delegate on fd 2
            self._mesh = Interpreter(model_content=mesh_model, num_threads=1)
            self._shapes = Interpreter(model_content=shapes_model, num_threads=1)
            self._mesh.allocate_tensors()
            self._shapes.allocate_tensors()
            self._mesh_in = self._mesh.get_input_details()[0]["index"]
            outputs = self._mesh.get_output_details()
            self._points_out = next(d["index"] for d in outputs if d["shape"][-1] == N_LANDMARKS * 3)
            self._presence_out = next(d["index"] for d in outputs if list(d["shape"]) == [1, 1, 1, 1])
            self._shapes_in = self._shapes.get_input_details()[0]["index"]
            self._shapes_out = self._shapes.get_output_details()[0]["index"]
            self.mesh(np.zeros((64, 64, 3), np.uint8), Region(32, 32, 64))  # first calls log too

    def mesh(self, rgb: np.ndarray, region: Region) -> tuple[np.ndarray, float]:
        """(478, 3) float32 points in image pixels (z at the scale of x, smaller nearer the camera) and the
        face presence probability for `region` of an (H, W, 3) uint8 RGB image."""
        to_crop = region.to_crop()
        crop = cv2.warpAffine(rgb, to_crop, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        self._mesh.set_tensor(self._mesh_in, (crop.astype(np.float32) * np.float32(1 / 255))[None])
        self._mesh.invoke()
        raw = self._mesh.get_tensor(self._points_out).reshape(N_LANDMARKS, 3)
        logit = float(self._mesh.get_tensor(self._presence_out).ravel()[0])
        back = cv2.invertAffineTransform(to_crop)
        points = np.empty((N_LANDMARKS, 3), np.float32)
        points[:, :2] = raw[:, :2] @ back[:, :2].T + back[:, 2]
        points[:, 2] = raw[:, 2] * (region.side / INPUT_SIDE)
        return points, float(1 / (1 + np.exp(-np.clip(logit, -30, 30))))

    def blendshapes(self, points: np.ndarray) -> np.ndarray:
        """(52,) float32 blendshape scores of a (478, 3) mesh (any pixel frame: the network normalises)."""
        self._shapes.set_tensor(self._shapes_in, np.ascontiguousarray(points[None, BLENDSHAPE_POINTS, :2], np.float32))
        self._shapes.invoke()
        scores: np.ndarray = self._shapes.get_tensor(self._shapes_out).astype(np.float32)
        return scores
