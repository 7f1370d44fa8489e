"""`Faces`: the one data type that flows through the pipeline (one image or video frame).

Parallel numpy arrays, one entry per face, filled in stage by stage (detection, mesh, pose,
action units, later expression and tracking). Coordinates are pixels of the **upright original**
image (EXIF orientation applied, full stored resolution; see `mien.io.images.LoadedImage`),
x to the right and y down; `image_size` is its (H, W). To draw on a resized copy, use
`Faces.scaled_to`. Turn it into table rows with `mien.io.table.faces_to_frame`.

It is a container: `faces[mask]`, `faces[[0, 2]]` and `faces[1:]` give the chosen faces (every
per-face array, smoothed copies included), `Faces.concat` joins faces of one image, and
`Faces.empty` is an image without faces.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from mien.expression.aus import AU_NAMES, SIDE_NAMES
from mien.expression.classes import COMPOUNDS, EXPRESSIONS
from mien.face.blendshapes import BLENDSHAPE_NAMES
from mien.face.mesh_net import N_LANDMARKS
from mien.face.quality import QUALITY_FLAGS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Faces", "N_LANDMARKS", "PER_FACE", "QUALITY_FLAGS"]


def _nan(*shape: int) -> np.ndarray:
    return np.full(shape, np.nan, dtype=np.float32)


# Per-face arrays: name -> shape of one face's entry (None: any, as for the aligned crops).
PER_FACE: dict[str, tuple[int, ...] | None] = {
    "boxes": (4,), "scores": (), "landmarks": (N_LANDMARKS, 3), "blendshapes": (len(BLENDSHAPE_NAMES),),
    "pose": (3,), "gaze": (2,), "aus": (len(AU_NAMES),), "au_sides": (len(SIDE_NAMES),), "au_prob": (len(AU_NAMES),),
    "flags": (len(QUALITY_FLAGS),), "sharpness": (), "transforms": (4, 4), "track_ids": (),
    "expression": (len(EXPRESSIONS),), "affect": (2,), "familiarity": (), "status": (), "blend": (),
    "compound": (len(COMPOUNDS),),
    "aligned": None, "age": (3,), "female": (),
}


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
        au_sides: (n, 10) one-sided AU estimates in [0, 1] (AU06, AU12, AU14, AU43, AU45 for the
            subject's left and right), ordered as `SIDE_NAMES`.
        au_prob: (n, 20) probability that a FACS coder would mark each AU present (learned, see
            `mien.expression.au_model`); NaN without a mesh.
        flags: (n, len(QUALITY_FLAGS)) bool quality flags.
        sharpness: (n,) sharpness score (variance of the Laplacian on the aligned crop); low = blurry.
        aligned: (n, S, S, 3) uint8 RGB aligned face crops (S = alignment size), or None.
        expression: (n, 8) calibrated expression probabilities ordered as `EXPRESSIONS`; NaN
            where the expression stage did not run or the face has no mesh.
        affect: (n, 2) derived valence and arousal in [-1, 1] (see `mien.expression.affect`).
        familiarity: (n,) energy of the expression logits; low = unlike the training faces.
        status: (n,) "known", "uncertain" or "unknown" expression outcome (see `mien.expression.openset`).
        blend: (n,) name of a two-expression blend ("happily surprised") or None.
        compound: (n, 14) probabilities that the face shows each of RAF-CE's compound expressions, ordered as
            `COMPOUNDS` (see `mien.expression.compound`): a row sums to the probability that it shows a compound
            at all; NaN where the face reads neutral or has no expression reading.
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
    landmarks: np.ndarray = field(default=None)  # type: ignore[arg-type]
    blendshapes: np.ndarray = field(default=None)  # type: ignore[arg-type]
    pose: np.ndarray = field(default=None)  # type: ignore[arg-type]
    gaze: np.ndarray = field(default=None)  # type: ignore[arg-type]
    aus: np.ndarray = field(default=None)  # type: ignore[arg-type]
    au_sides: np.ndarray = field(default=None)  # type: ignore[arg-type]
    au_prob: np.ndarray = field(default=None)  # type: ignore[arg-type]
    flags: np.ndarray = field(default=None)  # type: ignore[arg-type]
    sharpness: np.ndarray = field(default=None)  # type: ignore[arg-type]
    transforms: np.ndarray = field(default=None)  # type: ignore[arg-type]
    track_ids: np.ndarray = field(default=None)  # type: ignore[arg-type]
    expression: np.ndarray = field(default=None)  # type: ignore[arg-type]
    affect: np.ndarray = field(default=None)  # type: ignore[arg-type]
    familiarity: np.ndarray = field(default=None)  # type: ignore[arg-type]
    status: np.ndarray = field(default=None)  # type: ignore[arg-type]
    blend: np.ndarray = field(default=None)  # type: ignore[arg-type]
    compound: np.ndarray = field(default=None)  # type: ignore[arg-type]
    aligned: np.ndarray | None = None
    age: np.ndarray | None = None
    female: np.ndarray | None = None
    smoothed: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        defaults: dict[str, Callable[[], np.ndarray]] = {
            "landmarks": lambda: _nan(n, N_LANDMARKS, 3),
            "blendshapes": lambda: _nan(n, len(BLENDSHAPE_NAMES)),
            "pose": lambda: _nan(n, 3),
            "gaze": lambda: _nan(n, 2),
            "aus": lambda: _nan(n, len(AU_NAMES)),
            "au_sides": lambda: _nan(n, len(SIDE_NAMES)),
            "au_prob": lambda: _nan(n, len(AU_NAMES)),
            "flags": lambda: np.zeros((n, len(QUALITY_FLAGS)), dtype=bool),
            "sharpness": lambda: _nan(n),
            "transforms": lambda: _nan(n, 4, 4),
            "track_ids": lambda: np.full(n, -1, dtype=np.int64),
            "expression": lambda: _nan(n, len(EXPRESSIONS)),
            "affect": lambda: _nan(n, 2),
            "familiarity": lambda: _nan(n),
            "status": lambda: np.full(n, None, dtype=object),
            "blend": lambda: np.full(n, None, dtype=object),
            "compound": lambda: _nan(n, len(COMPOUNDS)),
        }
        for name, make in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, make())
        for name, shape in PER_FACE.items():
            value = getattr(self, name)
            if value is None:
                continue
            expected = (n, *shape) if shape is not None else (n,)
            actual = np.shape(value) if shape is not None else np.shape(value)[:1]
            if actual != expected:
                raise ValueError(f"Faces.{name} has shape {np.shape(value)}, expected {expected} "
                                 f"({n} faces)")
        for name, value in self.smoothed.items():
            if len(value) != n:
                raise ValueError(f"Faces.smoothed[{name!r}] has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> "Faces":
        """The faces chosen by a bool mask, an array or list of indices, a slice or an int (always a
        `Faces`, never one row); every per-face array and smoothed copy is indexed alike."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise IndexError(f"a mask of {index.shape} cannot index {len(self)} faces")
            if index.dtype != bool:
                index = index.astype(np.int64).reshape(-1)
        chosen = {name: getattr(self, name)[index] for name in PER_FACE if getattr(self, name) is not None}
        smoothed = {name: value[index] for name, value in self.smoothed.items()}
        return replace(self, **chosen, smoothed=smoothed)

    @classmethod
    def empty(cls, image_size: tuple[int, int], source: str = "<array>", frame: int = 0,
              time_s: float | None = None) -> "Faces":
        """No faces, in an image of `image_size` (H, W)."""
        return cls(boxes=np.zeros((0, 4), np.float32), scores=np.zeros(0, np.float32), image_size=image_size,
                   source=source, frame=frame, time_s=time_s)

    @classmethod
    def concat(cls, parts: Sequence["Faces"]) -> "Faces":
        """The faces of several `Faces` of one image or frame (same size, source, frame and time), in
        order. Optional arrays (aligned crops, attributes, smoothed copies) must be in all parts or none."""
        if not parts:
            raise ValueError("Faces.concat needs at least one Faces")
        first = parts[0]
        def where(f: Faces) -> tuple[Any, ...]:
            return tuple(f.image_size), f.source, f.frame, f.time_s

        for part in parts[1:]:
            if where(part) != where(first):
                raise ValueError(f"Faces.concat joins faces of one image; got {where(first)} and {where(part)}")
        joined: dict[str, Any] = {}
        for name in PER_FACE:
            values = [getattr(part, name) for part in parts]
            present = [v is not None for v in values]
            if all(present):
                joined[name] = np.concatenate(values)
            elif any(present):
                raise ValueError(f"Faces.concat: {name} is set in some parts and not in others")
        keys = set(first.smoothed)
        if any(set(part.smoothed) != keys for part in parts):
            raise ValueError("Faces.concat: the parts have different smoothed arrays")
        smoothed = {key: np.concatenate([part.smoothed[key] for part in parts]) for key in keys}
        return replace(first, **joined, smoothed=smoothed)

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

    def to_pandas(self, **kwargs: Any) -> "pd.DataFrame":
        """Tidy table, one row per face (see `mien.io.table.faces_to_frame`)."""
        from mien.io.table import faces_to_frame

        return faces_to_frame([self], **kwargs)
