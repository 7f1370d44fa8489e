"""mien: offline facial expression analysis.

>>> import mien
>>> df = mien.analyze("photos/")                 # one row per face (see mien.api)
>>> with mien.Analyzer() as analyzer:           # or stage by stage
...     table = analyzer.analyze("photo.jpg").to_pandas()
"""

import os

# MediaPipe's native code logs warnings to stderr by default; keep them to errors.
os.environ.setdefault("GLOG_minloglevel", "2")

from mien import accessor as _accessor  # noqa: F401  (registers df.mien)
from mien.analyzer import Analyzer, AnalyzerOptions
from mien.api import analyze, analyze_video, read
from mien.faces import QUALITY_FLAGS, Faces
from mien.io.images import ImageError, load_image
from mien.io.openface import read_openface

__version__ = "0.1.0"
__all__ = ["Analyzer", "AnalyzerOptions", "Faces", "ImageError", "QUALITY_FLAGS", "analyze", "analyze_video",
           "load_image", "read", "read_openface", "__version__"]
