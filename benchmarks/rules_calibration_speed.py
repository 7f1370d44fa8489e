"""What custom expressions and per-track calibration cost on a 5-minute video.

    python benchmarks/rules_calibration_speed.py [--clip ../shared/media/liveportrait_d3.mp4] [--minutes 5]

Builds a video of `--minutes` by repeating the clip (a real face, 512x512, mp4), then times the whole
`mien video LONG -o rows.parquet -q` against the same with `--expressions compound --calibrate auto`, alternating
them `--rounds` times; the figure is the median ratio of frames per second (with / without).
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


def long_video(clip: Path, minutes: float, target: Path) -> tuple[Path, int]:
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(bgr)
    capture.release()
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    total = int(minutes * 60 * fps)
    for i in range(total):
        writer.write(frames[i % len(frames)])
    writer.release()
    return target, total


def timed(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mien", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ROOT.parent / "shared" / "media" / "liveportrait_d3.mp4")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video, frames = long_video(args.clip, args.minutes, Path(tmp) / "long.mp4")
        plain, extra = [], []
        for _ in range(args.rounds):
            plain.append(timed("video", str(video), "-o", f"{tmp}/plain.parquet", "-q"))
            extra.append(timed("video", str(video), "-o", f"{tmp}/extra.parquet", "-q", "--expressions", "compound",
                               "--calibrate", "auto"))
    ratios = [p / e for p, e in zip(plain, extra)]
    result = {"video": f"{args.clip.name} repeated to {args.minutes:g} min ({frames} frames)",
              "plain_s": [round(s, 1) for s in plain], "rules_and_calibration_s": [round(s, 1) for s in extra],
              "speed_ratio": round(float(np.median(ratios)), 3), "ratios": [round(r, 3) for r in ratios]}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
