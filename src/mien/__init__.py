"""mien: offline facial expression analysis.

>>> import mien
>>> df = mien.analyze("photos/")                 # one row per face (see mien.api)
>>> with mien.Analyzer() as analyzer:           # or stage by stage
...     table = analyzer.analyze("photo.jpg").to_pandas()
"""

import os

# MediaPipe's native code logs warnings to stderr by default; keep them to errors.
os.environ.setdefault("GLOG_minloglevel", "2")

__version__ = "0.1.0"

# Imported on first use (PEP 562), so `import mien`, `mien --help` and training code on a machine without the
# run-time stack stay light; `df.mien` is registered as soon as the API or the accessor is used.
_LAZY = {
    "Analyzer": "mien.analyzer", "AnalyzerOptions": "mien.analyzer",
    "analyze": "mien.api", "analyze_video": "mien.api", "read": "mien.api", "calibrate": "mien.api",
    "Faces": "mien.faces", "QUALITY_FLAGS": "mien.faces",
    "ImageError": "mien.io.images", "load_image": "mien.io.images",
    "read_openface": "mien.io.openface",
}
__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mien' has no attribute {name!r}")
    import importlib

    importlib.import_module("mien.accessor")  # registers df.mien
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
