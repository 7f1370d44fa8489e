"""mien: offline facial expression analysis.

>>> import mien
>>> with mien.Analyzer() as analyzer:
...     table = analyzer.analyze("photo.jpg").to_pandas()
"""

import os

# MediaPipe's native code logs warnings to stderr by default; keep them to errors.
os.environ.setdefault("GLOG_minloglevel", "2")

from mien.analyzer import Analyzer, AnalyzerOptions
from mien.faces import QUALITY_FLAGS, Faces
from mien.io.images import ImageError, load_image

__version__ = "0.1.0"
__all__ = ["Analyzer", "AnalyzerOptions", "Faces", "ImageError", "QUALITY_FLAGS", "load_image", "__version__"]
