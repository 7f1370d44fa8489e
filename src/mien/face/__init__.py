"""Face stages: detection, mesh and blendshapes, head pose and gaze, alignment, quality."""
