"""Head pose and eye gaze from the face mesh.

Head pose comes from MediaPipe's facial transformation matrix (the canonical face fitted to the
mesh), as Euler angles in degrees, camera view:
- yaw: positive when the face turns towards the image's right (the subject's left);
- pitch: positive when the face tilts up (chin up);
- roll: positive when the head leans towards the image's right (clockwise in the image).
Mirroring an image flips the signs of yaw and roll and keeps pitch.

Gaze is the eyes' direction relative to the head, estimated from where each iris centre sits
between the eye corners and lids (points 468 and 473 of the 478-point mesh), averaged over both
eyes, in degrees with the same sign convention as yaw/pitch. It is a rough geometric estimate
(about +-10 degrees), not a calibrated eye tracker.
"""

from __future__ import annotations

import numpy as np

# Eyeball radius relative to half the eye opening's width (about 12 mm vs 15 mm).
_EYE_RADIUS_RATIO = 0.8
# (outer corner, inner corner, upper lid, lower lid, iris centre): subject's right, left eye.
_EYES = ((33, 133, 159, 145, 468), (263, 362, 386, 374, 473))


def euler_from_transform(transforms: np.ndarray) -> np.ndarray:
    """(n, 3) yaw, pitch, roll in degrees from (n, 4, 4) facial transformation matrices."""
    r = np.asarray(transforms, dtype=np.float64)[:, :3, :3]
    yaw = np.degrees(np.arcsin(np.clip(-r[:, 2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(r[:, 2, 1], r[:, 2, 2]))
    roll = np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    # Signs checked against the mesh itself (nose offset from the eye midline and vertical
    # position, 150 UTKFace faces, |r| > 0.87) and an in-plane rotation of a test image.
    return np.stack([yaw, -pitch, -roll], axis=1).astype(np.float32)


def gaze_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(n, 2) gaze yaw, pitch in degrees relative to the head, from (n, 478, 3) pixel landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :, :2]
    yaws, pitches = [], []
    for outer, inner, top, bottom, iris in _EYES:
        corner_a, corner_b = pts[:, outer], pts[:, inner]
        # Unit axis from the image-left corner to the image-right corner, and its normal (down).
        left = np.where((corner_a[:, :1] < corner_b[:, :1]), corner_a, corner_b)
        right = np.where((corner_a[:, :1] < corner_b[:, :1]), corner_b, corner_a)
        axis = right - left
        half_width = np.linalg.norm(axis, axis=1) / 2
        axis = axis / np.maximum(half_width[:, None] * 2, 1e-9)
        normal = np.stack([-axis[:, 1], axis[:, 0]], axis=1)
        centre = (left + right) / 2
        lid_mid = (pts[:, top] + pts[:, bottom]) / 2
        offset = pts[:, iris] - centre
        dx = (offset * axis).sum(1) / np.maximum(half_width, 1e-9)
        dy = ((pts[:, iris] - lid_mid) * normal).sum(1) / np.maximum(half_width, 1e-9)
        yaws.append(np.degrees(np.arcsin(np.clip(dx / _EYE_RADIUS_RATIO, -1, 1))))
        pitches.append(-np.degrees(np.arcsin(np.clip(dy / _EYE_RADIUS_RATIO, -1, 1))))
    return np.stack([np.mean(yaws, 0), np.mean(pitches, 0)], axis=1).astype(np.float32)
