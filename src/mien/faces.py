"""`Faces`: the one data type that flows through the pipeline (one image or video frame).

Parallel numpy arrays, one entry per face, filled in stage by stage (detection, mesh, pose,
action units, later expression and tracking). Coordinates are pixels of the **upright original**
image (EXIF orientation applied, full stored resolution; see `mien.io.images.LoadedImage`),
x to the right and y down; `image_size` is its (H, W). To draw on a resized copy, use
`Faces.scaled_to`. Turn it into table rows with `mien.io.table.faces_to_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mien.face.blendshapes import BLENDSHAPE_NAMES
from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS

N_LANDMARKS = 478
QUALITY_FLAGS = ("small_face", "strong_pose", "blurry", "partial", "no_mesh", "occluded")


def _nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


@dataclass
class Faces:
    """Faces found in one image or frame.

    Attributes:
        boxes: (n, 4) float32 face boxes as x1, y1, x2, y2 in pixels: the extent of the face's mesh
            (the detector's box for faces without a mesh).
        scores: (n,) detector confidence in [0, 1].
        landmarks: (n, 478, 3) mesh points; x, y in pixels, z in pixels relative to the face
            centre (smaller is closer to the camera). NaN where the mesh failed.
        blendshapes: (n, 52) blendshape scores in [0, 1], ordered as `BLENDSHAPE_NAMES`.
        pose: (n, 3) head yaw, pitch, roll in degrees (see `mien.face.pose`).
        gaze: (n, 2) eye gaze yaw, pitch in degrees relative to the head (see `mien.face.pose`).
        aus: (n, 20) action-unit intensity estimates in [0, 1], ordered as `AU_NAMES`.
        au_prob: (n, 20) probability that a FACS coder would mark each AU present (learned, see
            `mien.expression.au_model`); NaN without a mesh.
        flags: (n, len(QUALITY_FLAGS)) bool quality flags.
        blur: (n,) sharpness score (variance of the Laplacian on the aligned crop).
        aligned: (n, S, S, 3) uint8 RGB aligned face crops (S = alignment size), or None.
        expression: (n, 8) calibrated expression probabilities ordered as `EXPRESSIONS`; NaN
            where the expression stage did not run or the face has no mesh.
        affect: (n, 2) derived valence and arousal in [-1, 1] (see `mien.expression.affect`).
        familiarity: (n,) energy of the expression logits; low = unlike the training faces.
        status: (n,) "known", "uncertain" or "unknown" expression outcome (see `mien.expression.openset`).
        blend: (n,) name of a two-expression blend ("happily surprised") or None.
        age: (n, 3) apparent age in years (estimate, 80% interval low, high), or None when the
            attribute stage did not run (`AnalyzerOptions(attributes=True)`); NaN rows without a mesh.
        female: (n,) probability that the face presents as female (the attribute network's label),
            or None when the attribute stage did not run.
        track_ids: (n,) int track ids, -1 when untracked.
        smoothed: per-track temporally smoothed copies of some arrays (keys "boxes", "landmarks",
            "pose", "gaze", "expression", "aus", "affect"), filled in video mode.
        image_size: (height, width) of the source image.
        source: file path or a label for in-memory images.
        frame: frame index (0 for still images); time_s: timestamp in seconds or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    source: str = "<array>"
    frame: int = 0
    time_s: float | None = None
    landmarks: np.ndarray = field(default=None)  # type: ignore[assignment]
    blendshapes: np.ndarray = field(default=None)  # type: ignore[assignment]
    pose: np.ndarray = field(default=None)  # type: ignore[assignment]
    gaze: np.ndarray = field(default=None)  # type: ignore[assignment]
    aus: np.ndarray = field(default=None)  # type: ignore[assignment]
    au_prob: np.ndarray = field(default=None)  # type: ignore[assignment]
    flags: np.ndarray = field(default=None)  # type: ignore[assignment]
    blur: np.ndarray = field(default=None)  # type: ignore[assignment]
    transforms: np.ndarray = field(default=None)  # type: ignore[assignment]
    track_ids: np.ndarray = field(default=None)  # type: ignore[assignment]
    expression: np.ndarray = field(default=None)  # type: ignore[assignment]
    affect: np.ndarray = field(default=None)  # type: ignore[assignment]
    familiarity: np.ndarray = field(default=None)  # type: ignore[assignment]
    status: np.ndarray = field(default=None)  # type: ignore[assignment]
    blend: np.ndarray = field(default=None)  # type: ignore[assignment]
    aligned: np.ndarray | None = None
    age: np.ndarray | None = None
    female: np.ndarray | None = None
    smoothed: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        defaults = {
            "landmarks": lambda: _nan(n, N_LANDMARKS, 3),
            "blendshapes": lambda: _nan(n, len(BLENDSHAPE_NAMES)),
            "pose": lambda: _nan(n, 3),
            "gaze": lambda: _nan(n, 2),
            "aus": lambda: _nan(n, len(AU_NAMES)),
            "au_prob": lambda: _nan(n, len(AU_NAMES)),
            "flags": lambda: np.zeros((n, len(QUALITY_FLAGS)), dtype=bool),
            "blur": lambda: _nan(n),
            "transforms": lambda: _nan(n, 4, 4),
            "track_ids": lambda: np.full(n, -1, dtype=np.int64),
            "expression": lambda: _nan(n, len(EXPRESSIONS)),
            "affect": lambda: _nan(n, 2),
            "familiarity": lambda: _nan(n),
            "status": lambda: np.full(n, None, dtype=object),
            "blend": lambda: np.full(n, None, dtype=object),
        }
        for name, make in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, make())
            elif len(getattr(self, name)) != n:
                raise ValueError(f"Faces.{name} has {len(getattr(self, name))} rows, boxes has {n}")

    def __len__(self) -> int:
        return len(self.boxes)

    def flag(self, name: str) -> np.ndarray:
        """(n,) bool column of one quality flag, by name from QUALITY_FLAGS."""
        return self.flags[:, QUALITY_FLAGS.index(name)]

    def set_flag(self, name: str, values: np.ndarray) -> None:
        self.flags[:, QUALITY_FLAGS.index(name)] = values

    @property
    def top_expression(self) -> list[str | None]:
        """Most probable expression per face (None where there are no probabilities)."""
        return [None if np.isnan(p).any() else EXPRESSIONS[int(p.argmax())] for p in self.expression]

    def main_face(self) -> int | None:
        """Index of the face a one-person photo is about: the most confident face with a mesh (the most
        confident face when none has one); None without faces."""
        if not len(self):
            return None
        return int(np.argmax(self.scores + self.has_mesh))  # scores are <= 1: a mesh outranks any score

    def scaled_to(self, size: tuple[int, int]) -> "Faces":
        """These faces in the pixels of a resized copy of their image, of `size` (H, W) (the analysed,
        shrunk `LoadedImage.rgb`, a thumbnail): the one place coordinates change frame. Returns
        `self` when the size already matches; other arrays are shared, not copied."""
        height, width = size
        if (height, width) == tuple(self.image_size):
            return self
        sx, sy = width / self.image_size[1], height / self.image_size[0]
        box_scale = np.array([sx, sy, sx, sy], np.float32)
        point_scale = np.array([sx, sy, (sx + sy) / 2], np.float32)
        smoothed = dict(self.smoothed)
        if "boxes" in smoothed:
            smoothed["boxes"] = smoothed["boxes"] * box_scale
        if "landmarks" in smoothed:
            smoothed["landmarks"] = smoothed["landmarks"] * point_scale
        return replace(self, boxes=self.boxes * box_scale, landmarks=self.landmarks * point_scale,
                       image_size=(height, width), smoothed=smoothed)

    @property
    def has_mesh(self) -> np.ndarray:
        """(n,) True where the 478-point mesh was found."""
        return ~self.flag("no_mesh")

    def to_pandas(self, **kwargs):
        """Tidy table, one row per face (see `mien.io.table.faces_to_frame`)."""
        from mien.io.table import faces_to_frame

        return faces_to_frame([self], **kwargs)
