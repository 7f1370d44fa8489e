"""Is memory flat over a long folder run? `mien analyze DIR -o r.parquet -q` on N photos, resident memory sampled.

    python benchmarks/memory_photos.py [--photos 10000] [--format parquet]

The photos are the UTKFace faces from ../shared/datasets (else the bundled astronaut), each copy shifted,
scaled and re-encoded so no two files are the same. The command runs as a subprocess; its resident set
(VmRSS, /proc) is sampled twice a second. Prints and writes JSON: peak RSS, RSS after 10%, 50% and 100% of
the run, and the growth per 1,000 photos over the second half (flat memory: about 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def sources() -> list[np.ndarray]:
    faces = sorted((SHARED / "datasets" / "utkface").glob("*.jpg"))[:200]
    if faces:
        return [cv2.imread(str(p)) for p in faces]
    return [cv2.imread(str(ROOT / "src" / "mien" / "data" / "astronaut.jpg"))]


def make_photos(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    base = sources()
    for k in range(count):
        image = base[k % len(base)]
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-5, 5), rng.uniform(0.95, 1.05))
        matrix[:, 2] += rng.uniform(-4, 4, 2)
        out = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(folder / f"{k:05d}.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 95))])


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--format", default="parquet", choices=("parquet", "csv"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "memory_photos_results.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        make_photos(folder, args.photos)
        table = Path(tmp) / f"r.{args.format}"
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "mien", "analyze", str(folder), "-o", str(table), "-q"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples: list[tuple[float, float]] = []
        while child.poll() is None:
            value = rss_mb(child.pid)
            if value is not None:
                samples.append((time.perf_counter() - began, value))
            time.sleep(0.5)
        seconds = time.perf_counter() - began
    times = np.array([t for t, _ in samples])
    values = np.array([v for _, v in samples])
    at = lambda share: float(values[min(len(values) - 1, int(share * len(values)))])  # noqa: E731
    half = times >= times[-1] / 2
    slope = np.polyfit(times[half], values[half], 1)[0] if half.sum() > 2 else float("nan")
    photos_per_s = args.photos / seconds
    result = {"photos": args.photos, "format": args.format, "exit_code": child.returncode,
              "seconds": round(seconds, 1), "photos_per_s": round(photos_per_s, 1),
              "peak_rss_mb": round(float(values.max()), 1), "rss_mb_at_10pct": round(at(0.1), 1),
              "rss_mb_at_50pct": round(at(0.5), 1), "rss_mb_at_90pct": round(at(0.9), 1),
              "rss_mb_at_end": round(float(values[-1]), 1),
              "rss_mb_trace": [round(float(v), 1) for v in values[::max(1, len(values) // 20)]],
              "growth_mb_per_1000_photos_second_half": round(float(slope / photos_per_s * 1000), 2)}
    print(json.dumps(result))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
