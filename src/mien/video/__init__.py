"""Video: readers, tracking, smoothing, timelines."""
