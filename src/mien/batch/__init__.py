"""Batch analysis of many images and videos, locally or on Ray, resumable and exactly once.

>>> from mien.batch import run_batch, read_results, query
>>> run_batch(["photos/", "talks/"], "out/", workers=2)
>>> query("out/", "SELECT expression, count(*) FROM faces GROUP BY 1")
"""

from mien.batch.results import query, read_results, track_links
from mien.batch.runner import BatchSetupError, BatchSummary, run_batch
from mien.batch.worker import BatchOptions

__all__ = ["BatchOptions", "BatchSetupError", "BatchSummary", "query", "read_results", "run_batch", "track_links"]
