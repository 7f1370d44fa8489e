"""`VideoAnalyzer`: the image pipeline over frames, with tracking, mesh-following and smoothing.

Per frame: the detector runs every `detect_every` frames (and whenever a face was lost or none
is followed); in between, each face is followed by the mesh, cropped around where its track
predicts it (as MediaPipe's own video mode does), which is cheaper than detecting and keeps ids
stable when faces cross. Detections are matched to the followed faces, new faces start tracks,
and faces that come back after a short loss get their old id (`mien.video.tracker`). Then the
same measurements as for images (pose, AUs, expression...) and optional per-track smoothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from mien.assignment import min_cost_assignment
from mien.analyzer import Analyzer, flag_unread, mesh_matches_box, weak_detections
from mien.face.blazeface import box_iou
from mien.face.mesh import face_boxes
from mien.faces import Faces
from mien.options import VideoOptions
from mien.video.reader import VideoFrame
from mien.video.smoothing import TrackSmoother
from mien.video.tracker import FaceTracker, appearance_vector

# Two followed faces whose meshes overlap this much are the same face (one track drifted onto it).
_SAME_FACE_IOU = 0.5
# A run of detection frames in which nothing is found is also looked at turned over, every this many (the first
# included), at one whole-frame BlazeFace pass each (7 ms on a 960x540 frame): face-free video pays ~0.7 ms a frame.
EMPTY_LOOKS_TURNED_OVER = 10


class VideoAnalyzer:
    """Finds, follows and measures faces in a sequence of frames.

    >>> with VideoAnalyzer() as video, open_video("talk.mp4") as reader:
    ...     for frame, faces in video.run(reader, source="talk.mp4"):
    ...         rows = faces.to_pandas(smoothed=True)
    """

    def __init__(self, options: VideoOptions | None = None) -> None:
        self.options = options or VideoOptions()
        self.analyzer = Analyzer(self.options.analyzer)
        self._locator = ThreadPoolExecutor(1)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a new, unrelated video or chunk follows); the models stay loaded."""
        self.tracker = FaceTracker(self.options.tracker)
        self.smoother = TrackSmoother(self.options.smoothing) if self.options.smoothing else None
        self._scores: dict[int, float] = {}
        self._frames = 0
        self._detections = 0
        self._last_levels: int | None = None  # tile levels the last detection searched
        self._empty_detections = 0  # detection frames in a row in which nothing was found
        self._detect_next = True
        self.analyzer.mesh.forget_followers()

    def __enter__(self) -> "VideoAnalyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._locator.shutdown()
        self.analyzer.close()

    def run(self, frames: Iterable[VideoFrame], source: str = "<video>") -> Iterator[tuple[VideoFrame, Faces]]:
        """(frame, faces) for each frame, in order.

        Pipelined: while the mesh follows faces in frame N on a worker thread, frame N-1 is
        measured (AUs, expression...) on this one, so the two cores overlap (~1.3x on one face).
        """
        previous = None
        for frame in frames:
            located = self._locator.submit(self.locate, frame, source)
            if previous is not None:
                yield previous[0], self.finish(previous[1], previous[0].rgb)
            previous = frame, located.result()
        if previous is not None:
            yield previous[0], self.finish(previous[1], previous[0].rgb)

    def process(self, frame: VideoFrame, source: str = "<video>") -> Faces:
        """Faces of one frame, with `track_ids` (and `smoothed` when smoothing is on)."""
        return self.finish(self.locate(frame, source), frame.rgb)

    def locate(self, frame: VideoFrame, source: str = "<video>") -> Faces:
        """Detection or mesh-following and tracking: boxes, landmarks, blendshapes, transforms, track ids."""
        rgb, t = frame.rgb, frame.time_s
        ids, predicted = self.tracker.predict(t)
        detect = self._detect_next or self._frames % self.options.detect_every == 0 or not len(ids)
        self._frames += 1
        regions, mesh, found = self._meshes(rgb, ids, predicted, detect)
        # As in photos: with a face upside down the frame may be, so its other faces are looked for that way up; a
        # frame with nothing found is looked at turned over now and then, as a whole (a camera mounted upside down).
        n_regions = len(regions[0])
        if detect and (self._look_turned_over(n_regions) or mesh.upside_down().any()):
            regions, mesh, found = self._with_turned_over(rgb, regions, mesh, found,
                                                          self._last_levels if n_regions else 1)
        rois, rolls, turns, hints, scores, followed = regions
        if not detect and (followed & ~found).any():
            # A followed face lost its mesh (turned away, covered): look for it with the detector in this frame,
            # so that a face the mesh cannot read keeps its row and track.
            (rois, rolls, turns, hints, scores, followed), mesh, found = self._meshes(rgb, ids, predicted, True)
        # A detection the mesh cannot read (a head turned away, a hand over the face) that the full-range detector
        # confirms stays a row, flagged, so its track goes on; a followed face that lost its mesh does not.
        confirmed = found | (~followed & self.analyzer.confirmed_without_mesh(rgb, rois, found | followed))
        boxes = face_boxes(mesh.landmarks, found, rois)  # as in images: the mesh's extent
        keep = self._distinct(confirmed, boxes)
        # A followed face that the mesh lost, or one seen without a mesh (nothing to follow it by): detect again
        # next frame.
        self._detect_next = bool(((hints >= 0) & ~keep).any() or (keep & ~found).any())
        faces = Faces(boxes=boxes, scores=scores, image_size=rgb.shape[:2], source=source, frame=frame.index,
                      time_s=t, landmarks=mesh.landmarks, blendshapes=mesh.blendshapes,
                      transforms=mesh.transforms)
        flag_unread(faces, found, turns)
        faces = faces[keep]
        looks = np.stack([appearance_vector(rgb, box) for box in faces.boxes]) if len(faces) else None
        faces.track_ids = self.tracker.update(t, faces.boxes, looks, hints[keep])
        self.analyzer.mesh.remember(faces.track_ids, faces.landmarks)
        for i, track_id in enumerate(faces.track_ids):
            self._scores[int(track_id)] = float(faces.scores[i])
        self._forget_gone_tracks()
        return faces

    def finish(self, faces: Faces, rgb: np.ndarray) -> Faces:
        """Measurements (pose, AUs, expression, flags) and smoothing of located faces."""
        self.analyzer.measure(faces, rgb)
        if self.smoother is not None:
            self.smoother(faces)
        return faces

    def _meshes(self, rgb, ids, predicted, detect):
        """The regions (see `_regions`), their meshes, and which of them show the face they were framed for."""
        regions = self._regions(rgb, ids, predicted, detect)
        rois, rolls, _, hints, scores, followed = regions
        mesh = self.analyzer.mesh.estimate(rgb, rois, rolls, keys=hints, predicted=followed,
                                           strict=weak_detections(scores), scores=scores)
        return regions, mesh, mesh.found & mesh_matches_box(mesh.landmarks, rois)

    def _look_turned_over(self, faces: int) -> bool:
        """Whether a detection frame in which nothing was found is looked at turned over (a camera mounted upside
        down): every `EMPTY_LOOKS_TURNED_OVER`th one in a row."""
        self._empty_detections = 0 if faces else self._empty_detections + 1
        return not faces and self._empty_detections % EMPTY_LOOKS_TURNED_OVER == 1

    def _with_turned_over(self, rgb, regions, mesh, found, levels):
        """`regions`, their `mesh` and `found` with the faces detected in the frame turned over (`levels` of the tile
        pyramid, as in `FaceDetector.detect`) that no region holds."""
        more = self.analyzer.detector.detect_turned_over(rgb, self.options.analyzer.mode, levels).apart_from(regions[0])
        if not len(more):
            return regions, mesh, found
        new = self.analyzer.mesh_detections(rgb, more)
        n = len(more)
        added = (more.boxes, more.rolls, more.turns, np.full(n, -1, np.int64), more.scores, np.zeros(n, bool))
        regions = tuple(np.concatenate([old, extra.astype(old.dtype)]) for old, extra in zip(regions, added))
        return regions, mesh + new, np.concatenate([found, new.found & mesh_matches_box(new.landmarks, more.boxes)])

    def _regions(self, rgb, ids, predicted, detect):
        """Boxes to run the mesh in: matched and new detections, and predicted boxes of followed faces
        (rois, roll, turn, track id or -1, detection score, whether the box is a prediction)."""
        rois, rolls, turns, hints, scores, followed = [], [], [], [], [], []
        matched_tracks: set[int] = set()
        if detect:
            auto = self.options.analyzer.mode == "auto"
            tiles = not len(ids) or self._detections % max(1, self.options.tile_every) == 0
            self._detections += 1
            self._last_levels = (self.options.detect_levels if tiles else 1) if auto else None
            det_boxes, det_scores, det_rolls, det_turns = self.analyzer.detector.detect_with_pose(
                rgb, max_levels=self._last_levels)
            pairs = {}
            if len(ids) and len(det_boxes):
                iou = box_iou(det_boxes, predicted)
                for r, c in zip(*min_cost_assignment(-iou)):
                    if iou[r, c] >= self.options.tracker.min_iou:
                        pairs[r] = c
            for r, box in enumerate(det_boxes):
                c = pairs.get(r)
                rois.append(box)
                rolls.append(det_rolls[r])
                turns.append(det_turns[r])
                hints.append(ids[c] if c is not None else -1)
                scores.append(det_scores[r])
                followed.append(False)
                if c is not None:
                    matched_tracks.add(c)
        for c, track_id in enumerate(ids):
            if c not in matched_tracks:
                rois.append(predicted[c])
                rolls.append(0.0)  # unused: a followed face is framed by its last mesh
                turns.append(0.0)
                hints.append(track_id)
                scores.append(self._scores.get(int(track_id), np.nan))
                followed.append(True)
        # Followed faces first: when two boxes find the same face, the existing track keeps it.
        order = sorted(range(len(rois)), key=lambda i: hints[i] < 0)
        return (np.array([rois[i] for i in order], np.float32).reshape(-1, 4),
                np.array([rolls[i] for i in order], np.float32), np.array([turns[i] for i in order], np.float32),
                np.array([hints[i] for i in order], np.int64), np.array([scores[i] for i in order], np.float32),
                np.array([followed[i] for i in order], bool))

    def _distinct(self, found: np.ndarray, extents: np.ndarray) -> np.ndarray:
        keep = found.copy()
        for i in np.flatnonzero(found):
            if not keep[i]:
                continue
            for j in np.flatnonzero(keep):
                if j > i and box_iou(extents[i], extents[j])[0, 0] > _SAME_FACE_IOU:
                    keep[j] = False
        return keep

    def _forget_gone_tracks(self) -> None:
        # Faces not followed this frame are framed afresh from a detection when they come back.
        self.analyzer.mesh.release_all_but(self.tracker.active)
        alive = set(self.tracker.active) | set(self.tracker.lost)
        for track_id in [k for k in self._scores if k not in alive]:
            del self._scores[track_id]

