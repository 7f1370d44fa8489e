"""Video: readers, tracking, smoothing, timelines (`VideoAnalyzer`, `open_video`)."""

from mien.video.analyzer import VideoAnalyzer, VideoOptions
from mien.video.reader import VideoError, VideoFrame, VideoInfo, open_video

__all__ = ["VideoAnalyzer", "VideoOptions", "VideoError", "VideoFrame", "VideoInfo", "open_video"]
