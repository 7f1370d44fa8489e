"""Faces at any roll: is a turned face meshed where the same face is meshed upright?

    python benchmarks/turned_faces.py [--data ../shared/datasets] [--media ../shared/media] [--faces 330]

1. UTKFace photos (every 12th from the 6th, up to --faces) on a 400 px grey canvas; each photo once turned a little
   (uniform -30..30 degrees) and once at any angle (0..360), seed 1. The turned photo's first mesh, mapped back, is
   "right" where its mean landmark distance from the upright photo's mesh is under 0.15 eye distances, else
   "wrong"; "none" where no face has a mesh. Counts per band of the turn, and how often the expression's top class
   is the upright photo's.
2. `liveportrait_d3.mp4` written upside down (mp4v): share of frames whose expression is the upright clip's.
3. The shared KDEF's frontal photos (238, 7 expressions) as they are and turned over: faces meshed and expression
   accuracy against the posed label.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mien.analyzer import Analyzer
from mien.expression.classes import EXPRESSIONS
from mien.video.analyzer import VideoAnalyzer, VideoOptions
from mien.video.reader import open_video

EYE_CORNERS = (33, 263)
BANDS = {"within 30": (0, 30), "30-90": (30, 90), "90-180": (90, 180)}


def _band(degrees: float) -> str:
    off = abs((degrees + 180) % 360 - 180)
    return next(name for name, (low, high) in BANDS.items() if low <= off <= high)


def photos(data: Path, count: int) -> dict:
    files = sorted((data / "utkface").glob("*.jpg"))[5::12][:count]
    rng = np.random.default_rng(1)
    rows, seconds = [], 0.0
    with Analyzer() as analyzer:
        for path in files:
            canvas = np.full((400, 400, 3), 127, np.uint8)
            canvas[100:300, 100:300] = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            upright = analyzer.analyze(canvas)
            if len(upright) != 1 or not np.isfinite(upright.landmarks[0][0, 0]):
                continue
            theirs = upright.landmarks[0][:, :2]
            eyes = np.linalg.norm(theirs[EYE_CORNERS[0]] - theirs[EYE_CORNERS[1]])
            for degrees in (float(rng.uniform(-30, 30)), float(rng.uniform(0, 360))):
                turn = cv2.getRotationMatrix2D((200, 200), degrees, 1.0)
                turned = cv2.warpAffine(canvas, turn, (400, 400), borderValue=(127, 127, 127))
                start = time.perf_counter()
                faces = analyzer.analyze(turned)
                seconds += time.perf_counter() - start
                meshed = np.flatnonzero(np.isfinite(faces.landmarks[:, 0, 0])) if len(faces) else []
                if not len(meshed):
                    rows.append((degrees, "none", False))
                    continue
                back = cv2.invertAffineTransform(turn)
                mine = faces.landmarks[meshed[0]][:, :2] @ back[:, :2].T + back[:, 2]
                error = float(np.linalg.norm(mine - theirs, axis=1).mean() / eyes)
                same = bool(faces.expression[meshed[0]].argmax() == upright.expression[0].argmax())
                rows.append((degrees, "right" if error < 0.15 else "wrong", same))
    report = {}
    for band in BANDS:
        chosen = [r for r in rows if _band(r[0]) == band]
        report[band] = {"faces": len(chosen), **{k: sum(r[1] == k for r in chosen) for k in ("right", "wrong", "none")},
                        "same_expression": sum(r[2] for r in chosen)}
    report["seconds_turned"] = round(seconds, 1)
    return report


def clip(media: Path) -> dict:
    capture = cv2.VideoCapture(str(media / "liveportrait_d3.mp4"))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    readings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, turn in (("upright", None), ("upside_down", cv2.ROTATE_180)):
            path = Path(tmp) / f"{name}.mp4"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
            for frame in frames:
                writer.write(frame if turn is None else cv2.rotate(frame, turn))
            writer.release()
            with VideoAnalyzer(VideoOptions()) as video, open_video(path) as reader:
                readings[name] = [int(np.nanargmax(f.expression[0])) if len(f) and np.isfinite(f.expression[0]).all()
                                  else -1 for _, f in video.run(reader)]
    same = np.mean([a == b for a, b in zip(readings["upright"], readings["upside_down"])])
    return {"frames": len(frames), "same_expression_share": round(float(same), 3)}


def kdef_turned_over(data: Path) -> dict:
    report = {name: {"photos": 0, "meshed": 0, "correct": 0} for name in ("upright", "turned_over")}
    with Analyzer() as analyzer:
        for path in sorted((data / "kdef" / "S").glob("*/*.jpg")):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            for name, image in (("upright", rgb), ("turned_over", np.ascontiguousarray(rgb[::-1, ::-1]))):
                faces = analyzer.analyze(image)
                meshed = np.flatnonzero(np.isfinite(faces.landmarks[:, 0, 0])) if len(faces) else []
                report[name]["photos"] += 1
                if len(meshed):
                    report[name]["meshed"] += 1
                    report[name]["correct"] += int(EXPRESSIONS[int(faces.expression[meshed[0]].argmax())] == path.parent.name)
    for counts in report.values():
        counts["accuracy"] = round(counts["correct"] / max(counts["photos"], 1), 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=root / "../shared/datasets")
    parser.add_argument("--media", type=Path, default=root / "../shared/media")
    parser.add_argument("--faces", type=int, default=330)
    args = parser.parse_args()
    print(json.dumps({"utkface_turned": photos(args.data, args.faces), "clip_upside_down": clip(args.media),
                      "kdef_frontal": kdef_turned_over(args.data)}, indent=1))


if __name__ == "__main__":
    main()
