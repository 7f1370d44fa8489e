"""Stable face ids across frames: IoU matching with motion prediction, re-acquisition after loss.

Why our own: the well-kept trackers (supervision's ByteTrack, roboflow `trackers`) require the
`opencv-python` wheel, which would put a second OpenCV next to MediaPipe's opencv-contrib-python,
and norfair requires numpy < 2. This one is small and face-specific: faces followed by the mesh
arrive with their track id already known (`hints`); only fresh detections need matching, first
to active tracks by IoU against their constant-velocity prediction (Hungarian assignment), then
to recently lost tracks by position and appearance, so a face that was occluded or left the
frame for a moment gets its id back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mien.assignment import min_cost_assignment
from mien.face.blazeface import box_iou
from mien.options import TrackerOptions


@dataclass
class Track:
    """State of one face track; `box` is xyxy pixels, `velocity` pixels per second per box coordinate."""

    id: int
    box: np.ndarray
    time_s: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    appearance: np.ndarray | None = None
    frames: int = 1

    def predict(self, time_s: float) -> np.ndarray:
        return self.box + self.velocity * (time_s - self.time_s)


class FaceTracker:
    """Assigns track ids to the faces of consecutive frames (see module docs)."""

    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options or TrackerOptions()
        self.active: dict[int, Track] = {}
        self.lost: dict[int, Track] = {}
        self._next_id = 0

    def predict(self, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Ids (k,) and predicted xyxy boxes (k, 4) of the active tracks at `time_s`."""
        ids = np.array(list(self.active), dtype=np.int64)
        boxes = np.array([t.predict(time_s) for t in self.active.values()], np.float32).reshape(-1, 4)
        return ids, boxes

    def update(self, time_s: float, boxes: np.ndarray, appearance: np.ndarray | None = None,
               hints: np.ndarray | None = None) -> np.ndarray:
        """Track ids (n,) for this frame's boxes (n, 4).

        Args:
            time_s: frame time in seconds (increasing).
            boxes: xyxy face boxes of this frame.
            appearance: (n, d) appearance vectors (unit length), used to re-acquire lost tracks.
            hints: (n,) id of the active track each face was followed from, -1 for fresh detections.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        n = len(boxes)
        hints = np.full(n, -1, np.int64) if hints is None else np.asarray(hints, np.int64)
        ids = np.full(n, -1, np.int64)
        for i in range(n):
            if hints[i] in self.active and hints[i] not in ids:
                ids[i] = hints[i]
        free = [t for t in self.active if t not in ids]
        fresh = np.flatnonzero(ids < 0)
        self._match_active(time_s, boxes, ids, fresh, free)
        fresh = np.flatnonzero(ids < 0)
        self._reacquire(time_s, boxes, appearance, ids, fresh)
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_id
            self._next_id += 1
        self._store(time_s, boxes, appearance, ids)
        return ids

    def _match_active(self, time_s, boxes, ids, fresh, free) -> None:
        if not len(fresh) or not free:
            return
        predicted = np.array([self.active[t].predict(time_s) for t in free], np.float32)
        iou = box_iou(boxes[fresh], predicted)
        rows, cols = min_cost_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] >= self.options.min_iou:
                ids[fresh[r]] = free[c]

    def _reacquire(self, time_s, boxes, appearance, ids, fresh) -> None:
        self.lost = {k: t for k, t in self.lost.items() if time_s - t.time_s <= self.options.max_lost_s}
        if not len(fresh) or not self.lost:
            return
        lost = list(self.lost.values())
        cost = np.full((len(fresh), len(lost)), np.inf)
        for r, i in enumerate(fresh):
            for c, track in enumerate(lost):
                size = max(track.box[2] - track.box[0], 1.0)
                distance = np.hypot(*(_centre(boxes[i]) - _centre(track.box))) / size
                scale = (boxes[i][2] - boxes[i][0]) / size
                if distance > self.options.reacquire_distance or not 0.5 < scale < 2.0:
                    continue
                look = 0.0
                if appearance is not None and track.appearance is not None:
                    look = 1.0 - float(appearance[i] @ track.appearance)
                    if look > self.options.max_appearance_distance:
                        continue
                cost[r, c] = look + 0.2 * distance
        finite = np.where(np.isfinite(cost), cost, 1e6)
        rows, cols = min_cost_assignment(finite)
        for r, c in zip(rows, cols):
            if np.isfinite(cost[r, c]):
                ids[fresh[r]] = lost[c].id
                del self.lost[lost[c].id]

    def _store(self, time_s, boxes, appearance, ids) -> None:
        seen = {}
        a = self.options.velocity_smoothing
        for i, track_id in enumerate(ids):
            old = self.active.get(track_id) or self.lost.pop(track_id, None)
            look = None if appearance is None else appearance[i]
            if old is None:
                seen[track_id] = Track(int(track_id), boxes[i].copy(), time_s, appearance=look)
                continue
            dt = time_s - old.time_s
            if dt > 0 and track_id in self.active:
                velocity = (boxes[i] - old.box) / dt
                old.velocity = (a * velocity + (1 - a) * old.velocity).astype(np.float32)
            else:
                old.velocity = np.zeros(4, np.float32)
            old.box, old.time_s, old.frames = boxes[i].copy(), time_s, old.frames + 1
            if look is not None:
                # A slowly updated template: robust to one odd frame, follows gradual change.
                old.appearance = look if old.appearance is None else _unit(0.9 * old.appearance + 0.1 * look)
            seen[track_id] = old
        for track_id, track in self.active.items():
            if track_id not in seen:
                self.lost[track_id] = track
        self.active = seen


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def appearance_vector(rgb: np.ndarray, box: np.ndarray, side: int = 12) -> np.ndarray:
    """Unit-length, mean-removed colour thumbnail (side x side x 3) of the face box in an RGB frame."""
    import cv2

    h, w = rgb.shape[:2]
    x1, y1 = int(np.clip(box[0], 0, w - 1)), int(np.clip(box[1], 0, h - 1))
    x2, y2 = int(np.clip(box[2], x1 + 1, w)), int(np.clip(box[3], y1 + 1, h))
    small = cv2.resize(rgb[y1:y2, x1:x2], (side, side), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    return _unit(small - small.mean())
