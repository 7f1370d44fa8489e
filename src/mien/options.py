"""Typed, frozen, validated options of the image pipeline, and the one builder everything uses.

The CLI, the Python API, batch workers, the server and reports all build their `AnalyzerOptions`
(and video options) through `analyzer_options` / `video_options`, so a setting means the same
everywhere and a bad value fails at once with a message naming it:

>>> analyzer_options(mode="fast", expression_prior="balanced").detector.mode
'fast'
>>> analyzer_options(mode="quick")
Traceback (most recent call last):
...
mien.options.OptionsError: mode must be one of 'fast', 'thorough', 'auto', 'crops', not 'quick'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from mien.expression.classes import PRIORS
from mien.face.settings import ALIGN_SIZE, DEFAULT_MIN_SCORE, DetectMode, DetectorOptions

Prior = Literal["natural", "balanced", "ferplus", "rafdb"]
LandmarkColumns = Literal["none", "2d", "3d"]
MODES: tuple[str, ...] = get_args(DetectMode)
LANDMARK_COLUMNS: tuple[str, ...] = get_args(LandmarkColumns)
# Landmark columns by default: 2-D points for photos (one row per face); none for video, batch and the server,
# where 956 more columns on every frame's row (or in every JSON reply) would dwarf the rest.
PHOTO_LANDMARKS: LandmarkColumns = "2d"
VIDEO_LANDMARKS: LandmarkColumns = "none"


class OptionsError(ValueError):
    """An option has a value mien cannot use; the message names the option and what it accepts."""


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise `OptionsError` unless `value` is one of `choices`."""
    if value not in choices:
        raise OptionsError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")


def check_range(name: str, value: float | int | None, low: float | None = None, high: float | None = None,
                optional: bool = False, integer: bool = False) -> None:
    """Raise `OptionsError` unless `low <= value <= high` (and an int when `integer`); None passes when
    `optional`."""
    if value is None and optional:
        return
    numeric = isinstance(value, int) if integer else isinstance(value, (int, float))
    if value is None or isinstance(value, bool) or not numeric:
        raise OptionsError(f"{name} must be {'an integer' if integer else 'a number'}, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"between {low} and {high}" if low is not None and high is not None
                  else f"at least {low}" if low is not None else f"at most {high}")
        raise OptionsError(f"{name} must be {bounds}, not {value!r}")


@dataclass(frozen=True)
class AnalyzerOptions:
    """Options of `mien.Analyzer` (validated on construction; frozen).

    Attributes:
        mode: detector mode, "fast" (one BlazeFace pass; large faces), "auto" (that pass; beyond a portrait,
            CenterFace too: groups) or "thorough" (CenterFace at more pixels and BlazeFace tiles: crowds); see
            `mien.face.detect`. "crops": no detector, each image is one face already cropped (a dataset's face
            images, such as FER+'s 48 px chips): one row per image, its box the mesh's extent.
        min_score: minimum detector confidence, 0-1.
        min_face_size: ignore faces smaller than this many pixels (shorter box side).
        max_faces: keep at most this many faces per image, most confident first.
        require_mesh: drop detections in which the mesh model finds no face, unless BlazeFace full-range
            confirms them (those rows are kept, flagged `no_mesh`, without measurements); with False every
            detection is kept.
        align_size: side in pixels of the aligned face crops.
        keep_aligned: keep the aligned crops in `Faces.aligned` (needed by later stages).
        expression: run mien's expression classifier (probabilities, valence/arousal).
        expression_prior: the classifier's class prior, "natural", "balanced", "ferplus" or "rafdb" (see
            `ExpressionClassifier`).
        attributes: also estimate apparent age and gender presentation (`mien.face.attributes`);
            off by default.
        threads: CPU threads for the mesh and the classifier (None: up to two); 1 when several
            pipelines share the cores (batch workers).
    """

    mode: DetectMode = "auto"
    min_score: float = DEFAULT_MIN_SCORE
    min_face_size: int = 0
    max_faces: int | None = None
    require_mesh: bool = True
    align_size: int = ALIGN_SIZE
    keep_aligned: bool = False
    expression: bool = True
    expression_prior: Prior = "natural"
    attributes: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_range("min_score", self.min_score, 0.0, 1.0)
        check_range("min_face_size", self.min_face_size, 0, integer=True)
        check_range("max_faces", self.max_faces, 1, optional=True, integer=True)
        check_range("align_size", self.align_size, 16, 1024, integer=True)
        check_choice("expression_prior", self.expression_prior, PRIORS)
        check_range("threads", self.threads, 1, optional=True, integer=True)
        for name in ("require_mesh", "keep_aligned", "expression", "attributes"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"{name} must be True or False, not {getattr(self, name)!r}")

    @property
    def detector(self) -> DetectorOptions:
        """The face detector's options, derived from these."""
        return DetectorOptions(self.mode, self.min_score, self.min_face_size, self.max_faces)


@dataclass(frozen=True)
class TrackerOptions:
    """Options of `FaceTracker`.

    Attributes:
        min_iou: a detection continues an active track when it overlaps the track's predicted
            box by at least this IoU.
        max_lost_s: a lost track can be re-acquired for this long (seconds).
        reacquire_distance: how far (in face widths, from where it was lost) a lost face may
            reappear and still get its id back.
        max_appearance_distance: largest appearance distance (0-2, 1 - correlation of the
            aligned face thumbnails) for re-acquisition.
        velocity_smoothing: weight of the newest motion in the velocity estimate (0-1).
    """

    min_iou: float = 0.2
    max_lost_s: float = 2.0
    reacquire_distance: float = 2.5
    max_appearance_distance: float = 0.6
    velocity_smoothing: float = 0.5

    def __post_init__(self) -> None:
        check_range("min_iou", self.min_iou, 0.0, 1.0)
        check_range("max_lost_s", self.max_lost_s, 0.0)
        check_range("reacquire_distance", self.reacquire_distance, 0.0)
        check_range("max_appearance_distance", self.max_appearance_distance, 0.0, 2.0)
        check_range("velocity_smoothing", self.velocity_smoothing, 0.0, 1.0)


@dataclass(frozen=True)
class SmoothingOptions:
    """Options of `TrackSmoother`.

    Attributes:
        min_cutoff: One-Euro minimum cut-off (Hz) for landmarks, boxes and pose; lower is smoother.
        beta: One-Euro speed coefficient; higher follows fast motion with less lag.
        tau_s: EMA time constant (seconds) for expression probabilities, AUs and valence/arousal.
        forget_s: a track unseen this long starts its filters afresh.
    """

    min_cutoff: float = 1.0
    beta: float = 0.05
    tau_s: float = 0.2
    forget_s: float = 1.0

    def __post_init__(self) -> None:
        check_range("min_cutoff", self.min_cutoff, 0.0)
        check_range("beta", self.beta, 0.0)
        check_range("tau_s", self.tau_s, 0.0)
        check_range("forget_s", self.forget_s, 0.0)


@dataclass(frozen=True)
class VideoOptions:
    """Options of `VideoAnalyzer`.

    Attributes:
        analyzer: image pipeline options (detector mode, minimum score and size, expression prior...).
        detect_every: run the detector every this many processed frames (1: every frame).
        tile_every: in "auto" mode, search the smaller tile levels on every this many detection frames
            (the whole frame on all of them): a new small face is found within `detect_every *
            tile_every` frames (1 s at 30 fps), and detection costs a third.
        detect_levels: in "auto" mode, the tile-pyramid levels searched on detection frames (2: the
            whole frame and its half-size tiles, about 15 ms at 640x480, finds faces down to about a
            twentieth of the frame). Video searches with BlazeFace alone in "auto" mode; "thorough" runs
            CenterFace on every detection frame.
        tracker: track matching and re-acquisition options.
        smoothing: per-track smoothing options, or None for no smoothing.
    """

    analyzer: AnalyzerOptions = field(default_factory=AnalyzerOptions)
    detect_every: int = 10
    tile_every: int = 3
    detect_levels: int = 2
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    smoothing: SmoothingOptions | None = field(default_factory=SmoothingOptions)

    def __post_init__(self) -> None:
        for name in ("detect_every", "tile_every", "detect_levels"):
            check_range(name, getattr(self, name), 1, integer=True)
        if self.analyzer.mode == "crops":
            raise OptionsError("mode 'crops' (each image one cropped face) is for images; video finds its faces")


# CLI spellings of AnalyzerOptions fields.
_ALIASES = {"prior": "expression_prior"}


def analyzer_options(**settings: Any) -> AnalyzerOptions:
    """`AnalyzerOptions` from keyword settings (field names, or `prior` for `expression_prior`).

    Raises:
        TypeError: an unknown option name (as for any unknown keyword argument).
        OptionsError: a bad value; the message names the option and what it accepts.
    """
    fields = {f.name for f in dataclasses.fields(AnalyzerOptions)}
    values = {}
    for name, value in settings.items():
        key = _ALIASES.get(name, name)
        if key not in fields:
            raise TypeError(f"unknown option {name!r}; options are {', '.join(sorted(fields))}")
        values[key] = value
    return AnalyzerOptions(**values)


def video_options(detect_every: int = 10, smooth: bool = True, **settings: Any) -> VideoOptions:
    """`VideoOptions` for `VideoAnalyzer`: the video settings (`detect_every`, `smooth`) and, in
    `settings`, those of `analyzer_options`."""
    check_range("detect_every", detect_every, 1, integer=True)
    return VideoOptions(analyzer=analyzer_options(**settings), detect_every=detect_every,
                        smoothing=SmoothingOptions() if smooth else None)
