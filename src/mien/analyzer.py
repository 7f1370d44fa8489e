"""`Analyzer`: the image pipeline, detect -> mesh -> pose/gaze -> blendshapes -> AUs -> expression -> flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from mien.expression.affect import valence_arousal
from mien.expression.au_model import load_model as load_au_model
from mien.expression.au_model import occurrence as au_occurrence
from mien.expression.aus import estimate_aus, estimate_sides
from mien.expression import openset
from mien.expression.calibration import softmax
from mien.expression.compound import compound_share
from mien.expression.compound import load_model as load_compound_model
from mien.expression.compound import read as read_compound
from mien.expression.classifier import ExpressionClassifier
from mien.expression.crop import mesh_face_image
from mien.face import quality
from mien.face.align import ALIGN_MARGIN, align_face, unit_matrix
from mien.face.blazeface import box_iou
from mien.face.detect import SECOND_OPINION_SCORE, Detections, FaceDetector
from mien.face.geometry import facial_transforms
from mien.face.mesh import MeshEstimator, MeshResult, face_boxes
from mien.face.pose import euler_from_transform, gaze_from_landmarks
from mien.faces import QUALITY_FLAGS, Faces
from mien.io.images import ImageError, ImageLike, LoadedImage, expand_inputs, load_image
from mien.models import resolve
from mien.options import AnalyzerOptions, analyzer_options


class Analyzer:
    """Finds and measures faces in images.

    >>> with Analyzer(mode="fast") as analyzer:
    ...     faces = analyzer.analyze("photo.jpg")
    ...     table = faces.to_pandas()
    """

    mesh_boxes = True  # boxes from the mesh's extent; False gives the detector's boxes (benchmarks only)

    def __init__(self, options: AnalyzerOptions | None = None, **kwargs: Any) -> None:
        self.options = options or analyzer_options(**kwargs)
        self._detector = FaceDetector(self.options.detector)
        self._mesh = MeshEstimator(workers=self.options.threads)
        self._openset = openset.load_thresholds(self.options.expression_prior)
        load_au_model()  # checked now: a missing or altered weight file fails here, with its name
        if self.options.expression:
            load_compound_model()
        self._classifier = (ExpressionClassifier(prior=self.options.expression_prior, spin=False,
                                                 threads=self.options.threads)
                            if self.options.expression else None)
        self._explainer: ExpressionClassifier | None = None
        self._attributes = None
        if self.options.attributes:
            from mien.face.attributes import AttributeEstimator

            self._attributes = AttributeEstimator()

    @property
    def detector(self) -> FaceDetector:
        """The face detector (for callers that run the stages themselves, like video mode)."""
        return self._detector

    @property
    def mesh(self) -> MeshEstimator:
        """The mesh and blendshape estimator."""
        return self._mesh

    @property
    def classifier(self) -> ExpressionClassifier | None:
        """The expression classifier (None when `expression=False`)."""
        return self._classifier

    @property
    def explainer(self) -> ExpressionClassifier | None:
        """The float network the int8 `classifier` was quantized from, with the same prior: explanations
        (occlusion heatmaps) run on it. On dataset faces its heatmaps and the int8 model's agree closely
        (median correlation 0.996), but on a near-certain face int8 rounding (~0.08 logits) can move heat
        between regions. Loaded on first use; None when `expression=False`."""
        if self._classifier is not None and self._explainer is None:
            self._explainer = ExpressionClassifier(resolve("expression_float"), prior=self.options.expression_prior,
                                                   spin=False, threads=self.options.threads)
        return self._explainer

    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the models."""
        self._detector.close()
        self._mesh.close()

    def analyze(self, image: ImageLike, color: str = "rgb", source: str | None = None) -> Faces:
        """Analyse one image.

        Args:
            image: file path, PIL image, or numpy array (H, W[, 3|4]).
            color: channel order of numpy input: "rgb" or "bgr" (as OpenCV reads).
            source: name for the `source` column (defaults to the path or "<array>").

        Returns:
            `Faces` with boxes and landmarks in the original image's pixels.

        Raises:
            ImageError: the input cannot be read as an image (message says why).
        """
        return self.analyze_loaded(load_image(image, color=color, source=source))

    def analyze_loaded(self, loaded: LoadedImage, frame: int = 0, time_s: float | None = None) -> Faces:
        """Analyse an already decoded image (see `mien.io.images.load_image`)."""
        rgb = loaded.rgb
        height, width = rgb.shape[:2]
        if self.options.mode == "crops":
            return self._analyze_face_crop(loaded, frame, time_s)
        found = self._detector.detect_faces(rgb)
        if len(found):
            mesh = self.mesh_detections(rgb, found)
            if mesh.upside_down().any():  # the photo may be turned over: its other faces are upside down too
                more = self._detector.detect_turned_over(rgb, self.options.detector.mode).apart_from(found.boxes)
                found, mesh = found + more, mesh + self.mesh_detections(rgb, more)
        else:
            found = self._detector.detect_turned_over(rgb)
            mesh = self.mesh_detections(rgb, found)
        boxes, scores, turns = found.boxes, found.scores, found.turns
        mesh.found &= mesh_matches_box(mesh.landmarks, boxes)
        # A face's box is CenterFace's where it saw the face (trained on WIDER FACE's hand-drawn boxes, it matches them
        # best), else the mesh's extent, else the detector's box.
        if self.mesh_boxes:
            boxes = np.where((found.confirmed > 0)[:, None], found.centerface_boxes,
                             face_boxes(mesh.landmarks, mesh.found, boxes))
        faces = Faces(boxes=boxes, scores=scores, image_size=(height, width), source=loaded.source, frame=frame,
                      time_s=time_s, landmarks=mesh.landmarks, blendshapes=mesh.blendshapes,
                      transforms=mesh.transforms)
        flag_unread(faces, mesh.found, turns)
        if self.options.require_mesh:
            seen_twice = found.confirmed >= CENTERFACE_CONFIRM
            faces = faces[mesh.found | seen_twice | self.confirmed_without_mesh(rgb, faces.boxes, mesh.found | seen_twice)]
        self.measure(faces, rgb)
        if loaded.scale != 1.0:
            _rescale(faces, loaded)
        return faces

    def _analyze_face_crop(self, loaded: LoadedImage, frame: int, time_s: float | None) -> Faces:
        """Mode "crops": the image is one face, cropped (a dataset's face images): no detector, the mesh reads the
        whole image as the face's box (small images enlarged for it, as when mien's models were trained and
        evaluated); one row, flagged `no_mesh` without measurements where the mesh finds no face in it."""
        rgb = loaded.rgb
        height, width = rgb.shape[:2]
        big, mesh = mesh_face_image(self._mesh, rgb)
        whole = np.array([[0, 0, width, height]], np.float32)
        # back to this image's pixels (x and y each by its own factor: the enlarged sides were rounded)
        sx, sy = width / big.shape[1], height / big.shape[0]
        landmarks = mesh.landmarks * np.array([sx, sy, (sx + sy) / 2], np.float32)
        if mesh.found.any():
            mesh.transforms[mesh.found] = facial_transforms(landmarks[mesh.found], (height, width))
        boxes = face_boxes(landmarks, mesh.found, whole) if self.mesh_boxes else whole
        faces = Faces(boxes=boxes, scores=np.ones(1, np.float32), image_size=(height, width), source=loaded.source,
                      frame=frame, time_s=time_s, landmarks=landmarks, blendshapes=mesh.blendshapes,
                      transforms=mesh.transforms)
        faces.set_flag("no_mesh", ~mesh.found)
        self.measure(faces, rgb)
        if loaded.scale != 1.0:
            _rescale(faces, loaded)
        return faces

    def mesh_detections(self, rgb: np.ndarray, found: Detections) -> MeshResult:
        """The meshes of fresh detections in `rgb` (weak ones must show a clear face)."""
        return self._mesh.estimate(rgb, found.boxes, found.rolls, strict=weak_detections(found.scores),
                                   scores=found.scores)

    def confirmed_without_mesh(self, rgb: np.ndarray, boxes: np.ndarray, found: np.ndarray) -> np.ndarray:
        """(n,) True for detections without a mesh (`found` False) that BlazeFace full-range confirms: faces the
        mesh cannot read (profiles, covered or tiny faces) kept as rows, flagged `no_mesh`."""
        confirmed = np.zeros(len(boxes), bool)
        unread = np.flatnonzero(~np.asarray(found, bool))
        if len(unread):
            confirmed[unread] = self._detector.second_opinion(rgb, boxes[unread]) >= SECOND_OPINION_SCORE
        return confirmed

    def measure(self, faces: Faces, rgb: np.ndarray) -> None:
        """Fill pose, gaze, AUs, expression, aligned crops, sharpness and quality flags of `faces` (boxes,
        landmarks, blendshapes and transforms set) in place; `rgb` is the frame they were found in."""
        ok = faces.has_mesh
        size = self.options.align_size
        aligned = np.zeros((len(faces), size, size, 3), np.uint8)
        units = np.zeros((len(faces), 2, 3))  # one alignment fit per face; every crop derives from it
        for i in np.flatnonzero(ok):
            units[i] = unit_matrix(faces.landmarks[i])
            aligned[i] = align_face(rgb, faces.landmarks[i], size, ALIGN_MARGIN, unit=units[i])
            faces.sharpness[i] = quality.sharpness(aligned[i])
        if ok.any():
            faces.pose[ok] = euler_from_transform(faces.transforms[ok])
            faces.gaze[ok] = gaze_from_landmarks(faces.landmarks[ok])
            faces.aus[ok] = estimate_aus(faces.blendshapes[ok], faces.landmarks[ok])
            faces.au_sides[ok] = estimate_sides(faces.blendshapes[ok], faces.landmarks[ok])
            network_logits = features = None
            if self._classifier is not None:
                crops = np.stack([self._classifier.crop(rgb, faces.landmarks[i], units[i]) for i in np.flatnonzero(ok)])
                logits, features = self._classifier.logits_and_features(crops, faces.blendshapes[ok])
                faces.expression[ok] = softmax(logits, self._classifier.temperature)
                faces.familiarity[ok] = openset.energy(logits, self._classifier.temperature)
                faces.affect[ok] = valence_arousal(faces.expression[ok], faces.aus[ok])
                network_logits = logits - self._classifier.shift  # the AU model reads them without the prior
            faces.au_prob[ok] = au_occurrence(faces.blendshapes[ok], faces.landmarks[ok], aligned[ok],
                                              network_logits, estimates=faces.aus[ok], units=units[ok],
                                              features=features)
            if network_logits is not None:
                faces.compound[ok] = read_compound(network_logits, faces.au_prob[ok], faces.expression[ok],
                                                   compound_share(self.options.expression_prior))
        if self.options.keep_aligned:
            faces.aligned = aligned
        if self._attributes is not None:
            faces.age, faces.female = self._attributes.estimate(rgb, faces.landmarks)
        _flag_quality(faces, rgb)
        if self._classifier is not None:
            untrusted = np.asarray(faces.flags[:, [QUALITY_FLAGS.index(f) for f in openset.UNTRUSTED_FLAGS]].any(1))
            faces.status[:] = openset.statuses(faces.expression, faces.familiarity, untrusted,
                                               self._openset["unknown_below"])
            faces.blend[:] = openset.blends(faces.expression, self._openset["blend_min"])

    def analyze_paths(self, paths: Iterable[str | Path]) -> Iterator[tuple[Path, Faces | ImageError]]:
        """Analyse files, folders and globs one by one; yields (path, Faces or ImageError)."""
        for path in expand_inputs(paths):
            try:
                yield path, self.analyze(path)
            except ImageError as exc:
                yield path, exc


def _flag_quality(faces: Faces, rgb: np.ndarray) -> None:
    """Set the quality flags (see `mien.face.quality`) of measured faces."""
    height, width = rgb.shape[:2]
    ok = faces.has_mesh
    sides = np.minimum(faces.boxes[:, 2] - faces.boxes[:, 0], faces.boxes[:, 3] - faces.boxes[:, 1])
    faces.set_flag("small_face", sides < quality.MIN_SIDE)
    with np.errstate(invalid="ignore"):
        strong = (np.abs(faces.pose[:, 0]) > quality.MAX_YAW) | (np.abs(faces.pose[:, 1]) > quality.MAX_PITCH)
        faces.set_flag("strong_pose", strong)
        faces.set_flag("blurry", faces.sharpness < quality.BLUR_THRESHOLD)
    partial = quality.box_outside_share(faces.boxes, width, height) > 0.10
    occluded = np.zeros(len(faces), bool)
    if ok.any():
        partial[ok] |= quality.outside_share(faces.landmarks[ok], width, height) > 0.05
        occluded[ok] = quality.occlusion_scores(rgb, faces.landmarks[ok]).max(1) > quality.OCCLUSION_THRESHOLD
    faces.set_flag("partial", partial)
    faces.set_flag("occluded", occluded)


# Detections scored below this need a clear face in their mesh region (presence >= 0.8) to
# become rows: on WIDER-mini this lifts precision from 0.930 to 0.94 without losing an easy face, and it
# drops the cartoon face of pyfeat_no_face.mp4 (score 0.65).
WEAK_SCORE = 0.7
# A detection without a mesh is a row when CenterFace scores it at least this (or BlazeFace full-range confirms it).
# Chosen on half of WIDER-mini (even-numbered images) for the most easy faces at row precision >= 0.93.
CENTERFACE_CONFIRM = 0.45


def flag_unread(faces: Faces, found: np.ndarray, turns: np.ndarray) -> None:
    """Flag `no_mesh` where the mesh found no face, and `profile` where such a face's detector keypoints say the
    head is turned (`turns`: `FaceDetector.detect_with_pose`)."""
    faces.set_flag("no_mesh", ~found)
    faces.set_flag("profile", ~found & (np.abs(turns) >= quality.PROFILE_TURN))


def weak_detections(scores: np.ndarray) -> np.ndarray:
    """(n,) True for detections weak enough that their mesh must show a clear face."""
    return np.asarray(scores) < WEAK_SCORE


def mesh_matches_box(landmarks: np.ndarray, boxes: np.ndarray, min_iou: float = 0.3) -> np.ndarray:
    """(n,) False where the mesh found in a box's crop belongs to another, larger face.

    A crop around a false detection (a chin, a collar) can show part of a neighbouring face;
    the mesh then lies mostly outside the box.
    """
    ok = np.zeros(len(boxes), bool)
    for i, (box, pts) in enumerate(zip(boxes, landmarks)):
        if np.isnan(pts).any():
            continue
        mesh_box = np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
        ok[i] = box_iou(box, mesh_box)[0, 0] >= min_iou
    return ok


def _rescale(faces: Faces, loaded: LoadedImage) -> None:
    """Report coordinates in the stored image's pixels when it was shrunk for analysis."""
    factor = 1.0 / loaded.scale
    faces.boxes *= factor
    faces.landmarks *= factor
    faces.image_size = loaded.original_size
