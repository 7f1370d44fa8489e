"""Analyse many images with every core busy: one pipeline per core on its own thread, results in input order.

MediaPipe, onnxruntime, OpenCV and PIL release the GIL while they compute, so two pipelines on two
threads keep both cores working (decoding, detection, mesh, classifier), while the caller turns
finished faces into table rows. Used by `mien analyze` (folder mode).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterable, Iterator

from mien.analyzer import Analyzer, AnalyzerOptions
from mien.faces import Faces
from mien.io.images import ImageError, ImageLike, LoadedImage, load_image


def default_pipelines(inputs: int) -> int:
    """Pipelines for a run of `inputs` images: one per core (at most 2 here), one for a single image."""
    return 1 if inputs < 2 else max(1, min(os.cpu_count() or 1, 2))


class ParallelAnalyzer:
    """`pipelines` Analyzers (each single-threaded inside) fed from one queue; use as a context manager."""

    def __init__(self, options: AnalyzerOptions, pipelines: int = 2) -> None:
        self.pipelines = max(1, pipelines)
        single = replace(options, threads=1) if self.pipelines > 1 else options
        self._analyzers = [Analyzer(single) for _ in range(self.pipelines)]
        self._free = list(self._analyzers)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.pipelines, thread_name_prefix="mien-pipeline")

    def __enter__(self) -> "ParallelAnalyzer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown()
        for analyzer in self._analyzers:
            analyzer.close()

    def _one(self, item: ImageLike, source: str | None) -> tuple[LoadedImage | None, Faces | ImageError]:
        with self._lock:
            analyzer = self._free.pop()
        try:
            loaded = load_image(item, source=source)
            return loaded, analyzer.analyze_loaded(loaded)
        except ImageError as exc:
            return None, exc
        finally:
            with self._lock:
                self._free.append(analyzer)

    def run(self, items: Iterable[ImageLike], ahead: int = 4) -> Iterator[tuple[ImageLike, LoadedImage | None, Faces | ImageError]]:
        """(item, decoded image or None, Faces or ImageError) per item (a path, or an RGB array or PIL image,
        named `<image K>` in the table), in input order; at most `pipelines + ahead` images are in memory."""
        pending: deque = deque()
        for k, item in enumerate(items):
            source = None if isinstance(item, (str, os.PathLike)) else f"<image {k}>"
            pending.append((item, self._pool.submit(self._one, item, source)))
            if len(pending) >= self.pipelines + ahead:
                done, future = pending.popleft()
                yield (done, *future.result())
        while pending:
            done, future = pending.popleft()
            yield (done, *future.result())
